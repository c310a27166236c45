//! The chaos campaign for `FERROLB_CHAOS_MINUTES` (30) with seed `FERROLB_CHAOS_SEED` (the
//! current time), run only when named (`hack/bench.sh chaos`): prints
//! `chaos_violations` (goal 0), `chaos_reconverge_max_ms`, the longest time from a storm's
//! end until the ToR's FIB, the client's ARP/NDP answers and the allocations agree with
//! `render announcements`, and `chaos_reconverge_all_max_ms`, the same for every router
//! (measured by polls about 1.5 s apart). Needs what the lab needs (root, Debian's FRR, the
//! control plane from `hack/k8s.sh`, FRR 10.3 from `hack/rootfs.sh`).

fn main() {
    // Thirty minutes: only when named, not in a run of every benchmark.
    const NAMES: [&str; 4] = [
        "chaos",
        "chaos_violations",
        "chaos_reconverge_max_ms",
        "chaos_reconverge_all_max_ms",
    ];
    let named = std::env::args()
        .skip(1)
        .any(|a| NAMES.contains(&a.as_str()));
    if !named || !ferrolb_e2e::lab::bench_selected(&NAMES) {
        return;
    }
    let minutes: f64 = std::env::var("FERROLB_CHAOS_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30.0);
    let seed: u64 = std::env::var("FERROLB_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        });
    let dir = std::env::temp_dir().join(format!("ferrolb-chaos-bench-{}", std::process::id()));
    let options = ferrolb_e2e::chaos::Options::new(minutes, seed, dir);
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
