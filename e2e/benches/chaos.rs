//! The chaos campaign for `FERROLB_CHAOS_MINUTES` (30) with seed `FERROLB_CHAOS_SEED` (the
//! current time), run only when named (`hack/bench.sh chaos`): prints
//! `chaos_violations` (goal 0), `chaos_reconverge_max_ms`, the longest time from a storm's
//! end until the ToR's FIB, the client's ARP/NDP answers and the allocations agree with
//! `render announcements`, and `chaos_reconverge_all_max_ms`, the same for every router
//! (measured by polls about 1.5 s apart). Needs what the lab needs (root, Debian's FRR, the
//! control plane from `hack/k8s.sh`, FRR 10.3 from `hack/rootfs.sh`).
//!
//! Then the campaign on real nodes (`ferrolb_e2e::chaos::nodes`) for
//! `FERROLB_CHAOS_NODES_MINUTES` (10; 0 skips it), with the same seed: `chaos_nodes_violations`
//! (goal 0), `chaos_nodes_failed_window_max_ms`, the longest run of a client's failed
//! requests, and `chaos_nodes_reconverge_max_ms`. Needs what the chart on real nodes needs
//! (containerd, runc, the CNI plugins, the image's root file system).

use ferrolb_e2e::paths::env_parsed;

fn main() {
    // Thirty minutes: only when named, not in a run of every benchmark.
    const NAMES: [&str; 7] = [
        "chaos",
        "chaos_violations",
        "chaos_reconverge_max_ms",
        "chaos_reconverge_all_max_ms",
        "chaos_nodes_violations",
        "chaos_nodes_failed_window_max_ms",
        "chaos_nodes_reconverge_max_ms",
    ];
    let named = std::env::args()
        .skip(1)
        .any(|a| NAMES.contains(&a.as_str()));
    if !named || !ferrolb_e2e::lab::bench_selected(&NAMES) {
        return;
    }
    let minutes: f64 = env_parsed("FERROLB_CHAOS_MINUTES").unwrap_or(30.0);
    let seed: u64 = env_parsed("FERROLB_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let dir = std::env::temp_dir().join(format!("ferrolb-chaos-bench-{}", std::process::id()));
    let options = ferrolb_e2e::chaos::Options::new(minutes, seed, dir);
    if minutes > 0.0 {
        match ferrolb_e2e::chaos::run(&options) {
            Ok(report) => {
                print!("{}", report.summary(minutes));
                print!("{}", report.bench_lines());
            }
            Err(error) => {
                eprintln!("chaos: {error:#}");
                std::process::exit(1);
            }
        }
    }
    let nodes_minutes: f64 = env_parsed("FERROLB_CHAOS_NODES_MINUTES").unwrap_or(10.0);
    if nodes_minutes <= 0.0 {
        return;
    }
    let scratch = match ferrolb_e2e::paths::Scratch::new("chaos-nodes") {
        Ok(scratch) => scratch,
        Err(error) => {
            eprintln!("chaos on nodes: {error:#}");
            std::process::exit(1);
        }
    };
    let options = ferrolb_e2e::chaos::nodes::NodesOptions {
        minutes: nodes_minutes,
        seed,
        dir: scratch.path().to_path_buf(),
    };
    match ferrolb_e2e::chaos::nodes::run_on_nodes(&options) {
        Ok(report) => {
            print!("{}", report.summary(nodes_minutes));
            print!("{}", report.bench_lines());
        }
        Err(error) => {
            eprintln!("chaos on nodes: {error:#}");
            std::process::exit(1);
        }
    }
}
