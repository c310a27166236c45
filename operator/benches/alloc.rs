//! `alloc_cold_10k`, `alloc_incremental`, `alloc_rss_10k`: 10,000 Services over 50 pools.
//!
//! 25 pools are pinned to one namespace each (serviceAllocation), 25 are open; half the
//! Services live in the pinned namespaces, half elsewhere, so automatic allocation walks both
//! kinds of pool and fills the open ones one after another. Every tenth Service shares its IP
//! under a sharing key. Prints `BENCH <name> <value> <unit>`.
//!
//! Run through `hack/bench.sh alloc_cold_10k` (or with no name, every benchmark).

use std::time::Instant;

use ferrolb::alloc::{self, AllocService, Port};
use ferrolb::config::{self, Config, LoadOptions};
use ferrolb::manifest;
use ferrolb::views::{ServiceKey, ServiceScope};

const SERVICES: usize = 10_000;
const POOLS: usize = 50;
const RUNS: usize = 21;

fn configuration() -> Config {
    let mut yaml = String::new();
    for i in 0..POOLS {
        let allocation = if i < POOLS / 2 {
            format!(
                ", serviceAllocation: {{priority: {}, namespaces: [team-{i}]}}",
                i + 1
            )
        } else {
            String::new()
        };
        yaml.push_str(&format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: pool-{i:02}}}\nspec: {{addresses: [10.{i}.0.0/23]{allocation}}}\n---\n"
        ));
    }
    let parsed = manifest::parse(&yaml, "bench", "metallb-system").expect("bench YAML parses");
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    config::load(&parsed.objects, &LoadOptions::default()).expect("bench config loads")
}

fn service(i: usize) -> AllocService {
    let namespace = if i.is_multiple_of(2) {
        format!("team-{}", (i / 2) % (POOLS / 2))
    } else {
        format!("other-{}", i % 7)
    };
    AllocService {
        sharing_key: i.is_multiple_of(10).then(|| format!("shared-{}", i % 3)),
        ..AllocService::ipv4(
            ServiceKey::new(&namespace, &format!("svc-{i}")),
            vec![Port {
                protocol: "TCP".into(),
                port: 8000 + i32::try_from(i % 1000).unwrap_or(0),
            }],
        )
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let names = ["alloc_cold_10k", "alloc_incremental", "alloc_rss_10k"];
    if !wanted.is_empty() && !wanted.iter().any(|w| names.contains(&w.as_str())) {
        return;
    }
    let scope = ServiceScope::default();
    let config = configuration();
    let services: Vec<AllocService> = (0..SERVICES).map(service).collect();

    // Peak RSS first, before the repeated runs: inputs, allocator and decisions together.
    let (allocator, decisions) = alloc::allocate_all(&config, &services, &scope);
    let assigned = decisions.values().filter(|d| !d.ingress.is_empty()).count();
    let rss = peak_rss_kib().map(|k| k as f64 / 1024.0);

    let mut cold = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = alloc::allocate_all(&config, &services, &scope);
        cold.push(start.elapsed().as_secs_f64() * 1000.0);
        drop(out);
    }

    let mut incremental = Vec::new();
    for i in 0..RUNS {
        let mut state = allocator.clone();
        let extra = service(SERVICES + 1 + i);
        let start = Instant::now();
        let decision = state.converge(&extra, &scope);
        incremental.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(!decision.ingress.is_empty(), "{:?}", decision.pending);
    }
    println!(
        "alloc: {SERVICES} Services over {POOLS} pools, {assigned} assigned; cold min {:.1} ms",
        cold.iter().copied().fold(f64::INFINITY, f64::min)
    );
    println!("BENCH alloc_cold_10k {:.1} ms", median(cold));
    println!("BENCH alloc_incremental {:.3} ms", median(incremental));
    match rss {
        Some(mib) => println!("BENCH alloc_rss_10k {mib:.1} MiB"),
        None => println!("alloc_rss_10k: /proc/self/status has no VmHWM"),
    }
}
