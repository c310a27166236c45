//! Failure windows seen by a client, on real nodes with the chart as shipped
//! ([`ferrolb_e2e::chart_lab`]): a request every 20 ms (each with a 1 s timeout) from the
//! client to a Service's IP, and the time from the first failed request to the first success
//! after the last failure.
//!
//! The Services' one pod runs on node 1, which stays up: the window is ferrolb's failover
//! (with a backend on the failed node, kube-proxy would go on sending it a share of the
//! requests until the node is marked NotReady, 50 s later, whatever announces the IP).
//!
//! - `traffic_l2_window_ms`: a layer-2 IP owned by node 2; node 2's switch port goes down
//!   (the port comes back between runs, and with it the ownership).
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

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ferrolb_e2e::chart_lab::{
    ChartLab, RequestLoop, bgp_manifests, drain_under_traffic, failure_window, l2_manifests,
    service_ip, spread_manifests,
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

fn print(name: &str, unit: &str, mut runs: Vec<f64>) {
    let text: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
    runs.sort_by(f64::total_cmp);
    let max = runs.last().copied().unwrap_or_default();
    println!("{name} runs ({unit}): {} (max {max:.0})", text.join(" "));
    if let Some(median) = runs.get(runs.len() / 2) {
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

/// Takes `port` down under a request loop to `ip`; returns the failure window in ms.
fn window(lab: &ChartLab, ip: &str, port: &str) -> Result<f64> {
    let requests = RequestLoop::start(&lab.client, ip, EVERY)?;
    std::thread::sleep(Duration::from_secs(1));
    lab.cluster.switch().set_port(port, false)?;
    let down = Instant::now();
    // Long enough for a failover and 2 s of answers after it.
    std::thread::sleep(Duration::from_secs(6));
    let results = requests.finish();
    lab.cluster.switch().set_port(port, true)?;
    let after: Vec<_> = results
        .into_iter()
        .filter(|(started, _)| *started + Duration::from_secs(1) > down)
        .collect();
    match failure_window(&after) {
        Some(window) => Ok(window.as_secs_f64() * 1e3),
        None => bail!("requests to {ip} never succeeded again after port {port} went down"),
    }
}

/// The node (`n1`/`n2`) whose MAC the client holds for `ip`.
fn l2_owner(lab: &ChartLab, ip: &str) -> Result<String> {
    let neighbour = lab.client.run("ip", &["neigh", "show", ip])?;
    for (i, ns) in lab.cluster.node_namespaces().iter().enumerate() {
        let mac = ns.run("cat", &["/sys/class/net/eth0/address"])?;
        if neighbour.contains(mac.trim()) {
            return Ok(format!("n{}", i + 1));
        }
    }
    bail!("the client's neighbour entry for {ip} names no node: {neighbour}")
}

/// One demo pod on node `node`, behind a BGP Service and four layer-2 Services.
fn survivor(node: &str) -> String {
    let mut out = ferrolb_e2e::image::demo_workload("survivor", Some(1)).replace(
        "    spec:\n      containers:",
        &format!(
            "    spec:\n      nodeSelector: {{kubernetes.io/hostname: {node}}}\n      containers:"
        ),
    );
    let services = std::iter::once(("survivor-bgp".to_string(), "bgp"))
        .chain((0..4).map(|i| (format!("survivor-l2-{i}"), "l2")));
    for (name, pool) in services {
        out.push_str(&format!(
            "---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
  annotations: {{metallb.io/address-pool: {pool}}}
spec:
  type: LoadBalancer
  selector: {{app: survivor}}
  ports: [{{port: 80, targetPort: 8080}}]
"
        ));
    }
    out
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
    let n1 = &lab.cluster.names()[0];
    kubectl.apply(&survivor(n1))?;
    let routed = service_ip(&lab.cluster, "survivor-bgp")?;
    let answered = |ip: &str| {
        lab.client
            .run("curl", &["-s", "-m", "1", &format!("http://{ip}/")])
            .is_ok_and(|a| a.starts_with("pod=survivor"))
    };
    let mut l2_ips = Vec::new();
    for i in 0..4 {
        l2_ips.push(service_ip(&lab.cluster, &format!("survivor-l2-{i}"))?);
    }
    let settled = |what: &str| -> Result<()> {
        wait_for(what, Duration::from_secs(90), || {
            let mut hops = lab::nexthops(&lab.rtr, &routed)?;
            hops.sort();
            let bfd = lab.tor.json("show bfd peers json")?;
            let bfd_up = bfd
                .as_array()
                .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["status"] == "up"));
            Ok((hops == ["10.95.0.11", "10.95.0.12"]
                && bfd_up
                && answered(&routed)
                && l2_ips.iter().all(|ip| answered(ip)))
            .then_some(()))
        })
    };
    settled("ECMP, BFD and answers")?;
    // A layer-2 IP node 2 answers for.
    let mut web = None;
    for ip in &l2_ips {
        if l2_owner(&lab, ip)? == "n2" {
            web = Some(ip.clone());
            break;
        }
    }
    let Some(web) = web else {
        bail!("node 2 owns none of {l2_ips:?}");
    };

    let mut l2_runs = Vec::new();
    for _ in 0..RUNS {
        l2_runs.push(window(&lab, &web, "n2")?);
        settled("the node back")?;
        if l2_owner(&lab, &web)? != "n2" {
            // Node 2 answers for it again once it is back; wait for its announcement.
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    print("traffic_l2_window_ms", "ms", l2_runs);

    let mut bfd_runs = Vec::new();
    for _ in 0..RUNS {
        bfd_runs.push(window(&lab, &routed, "n2")?);
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
