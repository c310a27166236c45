//! A short chaos campaign with a fixed seed (root; network namespaces, Debian's FRR, the
//! pinned Kubernetes release from `hack/k8s.sh`, FRR 10.3 from `hack/rootfs.sh`): the lab
//! through storms of overlapping faults and changes, every promise checked all along (see
//! `ferrolb_e2e::chaos`). `FERROLB_CHAOS_MINUTES` sets its length (3), `FERROLB_CHAOS_SEED`
//! its seed (1); `hack/chaos.sh` runs longer ones, `hack/bench.sh chaos` a 30-minute one.
//!
//! It uses the lab's fixed namespaces `ferrolb-*`: it refuses to start while a lab is up.

use anyhow::Result;
use ferrolb_e2e::paths::env_parsed;

#[test]
fn a_fixed_seed_campaign_breaks_no_promise() -> Result<()> {
    let minutes: f64 = env_parsed("FERROLB_CHAOS_MINUTES").unwrap_or(3.0);
    let seed: u64 = env_parsed("FERROLB_CHAOS_SEED").unwrap_or(1);
    let scratch = ferrolb_e2e::paths::Scratch::new("chaos")?;
    let options = ferrolb_e2e::chaos::Options::new(minutes, seed, scratch.path().join("lab"));
    let report = ferrolb_e2e::chaos::run(&options)?;
    let summary = report.summary(minutes);
    println!("{summary}");
    assert!(
        report.violations.is_empty(),
        "the campaign broke promises:\n{summary}"
    );
    // The campaign did what it says: faults of several kinds, changes, quiet periods.
    assert!(report.storms >= 2, "{summary}");
    assert!(report.faults.len() >= 5, "{summary}");
    assert!(report.changes >= 20, "{summary}");
    Ok(())
}
