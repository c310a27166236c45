//! A short chaos campaign on real nodes with a fixed seed (root; what `chart_on_nodes.rs`
//! needs): the chart on two kubelets, a client's requests to a BGP and a layer-2 Service all
//! along, storms of FRR daemon, speaker, pod and switch port faults, the cluster checked
//! after each (see `ferrolb_e2e::chaos::nodes`). `FERROLB_CHAOS_NODES_MINUTES` sets its
//! length (3), `FERROLB_CHAOS_NODES_SEED` its seed (1); `hack/chaos.sh --nodes` runs longer
//! ones, `hack/bench.sh chaos` a 10-minute one.

use anyhow::Result;
use ferrolb_e2e::paths::env_parsed;

#[test]
fn a_fixed_seed_campaign_on_nodes_breaks_no_promise() -> Result<()> {
    let minutes: f64 = env_parsed("FERROLB_CHAOS_NODES_MINUTES").unwrap_or(3.0);
    let seed: u64 = env_parsed("FERROLB_CHAOS_NODES_SEED").unwrap_or(1);
    let scratch = ferrolb_e2e::paths::Scratch::new("chaos-nodes")?;
    let options = ferrolb_e2e::chaos::nodes::NodesOptions {
        minutes,
        seed,
        dir: scratch.path().join("nodes"),
    };
    let report = ferrolb_e2e::chaos::nodes::run_on_nodes(&options)?;
    let summary = report.summary(minutes);
    println!("{summary}");
    assert!(
        report.violations.is_empty(),
        "the campaign broke promises:\n{summary}"
    );
    // The campaign did what it says: storms of faults under traffic.
    assert!(report.storms >= 2, "{summary}");
    assert!(report.faults.values().sum::<u32>() >= 5, "{summary}");
    assert!(report.requests >= 1_000, "{summary}");
    Ok(())
}
