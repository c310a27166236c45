//! Failure windows seen by a client, on real nodes with the chart as shipped
//! ([`ferrolb_e2e::chart_lab`]): a request every 20 ms (each with a 1 s timeout) from the
//! client to a Service's IP, and the time from the first failed request to the first success
//! after the last failure.
//!
//! The Services' one pod runs on node 1, which stays up: the window is ferrolb's failover
//! ([`ferrolb_e2e::chart_lab::survivor_manifests`]).
//!
//! - `traffic_l2_window_ms`: a layer-2 IP owned by node 2; node 2's switch port goes down
//!   (the port comes back between runs, and with it the ownership: how long after the
//!   port came up the client's neighbour entry named node 2 again is printed too, to the
//!   50 ms its polling allows).
//! - `traffic_bfd_window_ms`: a BGP IP through the FRR ToR (ECMP to both nodes, BFD
//!   100 ms × 3, graceful restart on); node 2's switch port goes down (the port comes back
//!   and ECMP and BFD are restored between runs).
//! - `traffic_drain_failed_requests`: `kubectl drain` of node 2 under requests to an
//!   `externalTrafficPolicy: Local` Service with a pod on each node, then `kubectl
//!   uncordon` ([`ferrolb_e2e::chart_lab::drain_under_traffic`]).
//! - `traffic_upgrade_failed_requests`: `helm upgrade` changing the log level, which
//!   restarts every speaker pod one node at a time, under requests to the BGP IP.
//!
//! Each figure is the median of 5 runs; the runs and the largest are printed beside it.
//!
//! Needs root and what `tests/chart_on_nodes.rs` needs.

use std::time::Duration;

use anyhow::{Result, bail};
use ferrolb_e2e::chart_lab::{
    ChartLab, RequestLoop, bgp_manifests, drain_under_traffic, l2_manifests, service_ip,
    spread_manifests, survivor_manifests,
};
use ferrolb_e2e::lab;
use ferrolb_e2e::paths::Scratch;
use ferrolb_e2e::process::wait_for;

const NAMES: [&str; 4] = [
    "traffic_l2_window_ms",
    "traffic_bfd_window_ms",
    "traffic_drain_failed_requests",
    "traffic_upgrade_failed_requests",
];
const EVERY: Duration = Duration::from_millis(20);
const RUNS: usize = 5;
/// How long a node's port stays down at most.
const LIMIT: Duration = Duration::from_secs(30);

/// Prints `runs` (in order) and their largest; returns their median.
fn print_runs(what: &str, unit: &str, mut runs: Vec<f64>) -> Option<f64> {
    let text: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
    runs.sort_by(f64::total_cmp);
    let max = runs.last().copied().unwrap_or_default();
    println!("{what} runs ({unit}): {} (max {max:.0})", text.join(" "));
    runs.get(runs.len() / 2).copied()
}

fn print(name: &str, unit: &str, runs: Vec<f64>) {
    if let Some(median) = print_runs(name, unit, runs) {
        println!("BENCH {name} {median:.0} {unit}");
    }
}

/// `helm upgrade` with the log level changed under a request loop to `ip`, waiting for the
/// speakers' rollout; returns (requests, failed).
fn upgrade(lab: &ChartLab, ip: &str, level: &str) -> Result<(usize, usize)> {
    let requests = RequestLoop::start(&lab.client, ip, EVERY)?;
    lab.upgrade_speakers(level)?;
    std::thread::sleep(Duration::from_secs(3));
    let results = requests.finish();
    Ok((results.len(), results.iter().filter(|(_, ok)| !ok).count()))
}

fn main() -> Result<()> {
    if !lab::bench_selected(&NAMES) {
        return Ok(());
    }
    let scratch = Scratch::new("traffic")?;
    let prefix = format!("fltr{}", std::process::id());
    let lab = ChartLab::start(&prefix, scratch.path())?;
    let kubectl = lab.cluster.kubectl();
    kubectl.apply(&l2_manifests())?;
    kubectl.apply(&bgp_manifests())?;
    kubectl.apply(&survivor_manifests(&lab.cluster)?)?;
    let routed = service_ip(&lab.cluster, "survivor-bgp")?;
    let web = service_ip(&lab.cluster, "survivor-l2")?;
    let settled = |what: &str| lab.wait_settled(what, &routed, &[&web]);
    settled("ECMP, BFD and answers")?;
    let ms = |window: Duration| window.as_secs_f64() * 1e3;

    let mut l2_runs = Vec::new();
    let mut back_runs = Vec::new();
    for _ in 0..RUNS {
        if lab.l2_owner(&web)? != 1 {
            bail!("node 2 does not answer for {web}, the IP the election gives it");
        }
        l2_runs.push(ms(lab.port_failure_window(&web, 1, LIMIT)?));
        // The port is up again: node 2 answers for the IP once the partition has healed
        // (the speakers announce themselves to those they have lost every 2 s) and it has
        // told the client so.
        let up = std::time::Instant::now();
        wait_for(
            "node 2 owning the IP again",
            Duration::from_secs(10),
            || Ok((lab.l2_owner(&web)? == 1).then_some(())),
        )?;
        back_runs.push(ms(up.elapsed()));
        settled("the node back")?;
    }
    print("traffic_l2_window_ms", "ms", l2_runs);
    print_runs(
        "the layer-2 IP back on node 2 after its port came up",
        "ms",
        back_runs,
    );

    let mut bfd_runs = Vec::new();
    for _ in 0..RUNS {
        bfd_runs.push(ms(lab.port_failure_window(&routed, 1, LIMIT)?));
        settled("the node back")?;
    }
    print("traffic_bfd_window_ms", "ms", bfd_runs);

    kubectl.apply(&spread_manifests())?;
    let spread = service_ip(&lab.cluster, "spread")?;
    let mut drain_runs = Vec::new();
    for _ in 0..RUNS {
        let drained = drain_under_traffic(&lab, &spread, 1)?;
        println!(
            "drain: {} of {} requests failed; after uncordon: {} of {}",
            drained.failed, drained.requests, drained.rejoin_failed, drained.rejoin_requests
        );
        drain_runs.push(drained.failed as f64);
    }
    print("traffic_drain_failed_requests", "requests", drain_runs);

    let mut upgrade_runs = Vec::new();
    for run in 0..RUNS {
        let level = if run % 2 == 0 { "debug" } else { "info" };
        let (requests, failed) = upgrade(&lab, &routed, level)?;
        println!("upgrade to logLevel={level}: {failed} of {requests} requests failed");
        upgrade_runs.push(failed as f64);
        settled("ECMP and BFD after the upgrade")?;
    }
    print("traffic_upgrade_failed_requests", "requests", upgrade_runs);
    Ok(())
}
