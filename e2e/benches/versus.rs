//! ferrolb and MetalLB side by side on the same real nodes, ToR, client and manifests
//! ([`ferrolb_e2e::metallb`]), in one run: MetalLB first (its own chart, native BGP mode and
//! layer 2), then the switch to ferrolb as the README tells a user, then ferrolb. A request
//! every 20 ms from the client to a Service's IP counts failures, as in `benches/traffic.rs`;
//! the Services' one pod runs on node 1, and node 2 is the one that fails.
//!
//! Figures (`BENCH versus_<figure>_<system>`, and `versus_<figure>_ratio` where both have one,
//! > 1 when ferrolb does better):
//! - `l2_window`: node 2, owner of a layer-2 IP, loses its switch port; the window of failed
//!   requests (median of 5; the port comes back once requests are answered again). MetalLB: memberlist's failure detection; ferrolb: its gossip.
//! - `bgp_failure_window`: node 2's port down, a BGP IP routed to both nodes (median of 5).
//!   MetalLB's native mode has no BFD, so its peer gets the shortest hold time BGP allows
//!   (3 s; MetalLB's default is 90 s); ferrolb's peer uses a BFD profile (100 ms × 3).
//!   Median of 3.
//! - `speaker_restart_withdrawn` and `speaker_restart_failed_requests`: `kubectl rollout
//!   restart` of the speaker DaemonSet under requests to the BGP IP: next hops the ToR
//!   withdrew, requests failed. MetalLB's native mode refuses graceful restart; ferrolb's
//!   peer enables it.
//! - `switch_ip_changes`, `switch_failed_requests` (BGP and layer-2 IPs together),
//!   `switch_withdrawn`, `switch_announced_ms`: the switch itself ([`metallb::switch_to_ferrolb`]),
//!   node by node as the README recommends ([`metallb::hand_over`]), or with
//!   `FERROLB_VERSUS_SWITCH=remove-first` MetalLB removed before ferrolb is installed.
//!
//! - `speaker_rss_idle`: the resident memory of a node's speaker with the lab's three
//!   Services (the larger node): MetalLB's native speaker process, against ferrolb's speaker
//!   pod whole (the speaker process and FRR's daemons; each is printed apart).
//!
//! The systems run one after the other, not alternating: the figures are windows of seconds
//! against noise of tens of milliseconds. Needs root, what `tests/chart_on_nodes.rs` needs and
//! the go command (`hack/metallb.sh`).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ferrolb_e2e::chart_lab::{
    ChartLab, NS, RequestLoop, bgp_manifests, bgp_manifests_with_peer, l2_manifests, service_ip,
    survivor_manifests,
};
use ferrolb_e2e::lab;
use ferrolb_e2e::metallb;
use ferrolb_e2e::paths::Scratch;
use ferrolb_e2e::process::wait_for;
use ferrolb_e2e::rss;
use ferrolb_e2e::sampler::{NexthopSampler, Sampled};

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One figure of both systems, with its ratio (`lower_is_better`: MetalLB's over ferrolb's).
fn figure(name: &str, unit: &str, metallb: (&str, f64), ferrolb: f64) {
    let (system, theirs) = metallb;
    println!("BENCH versus_{name}_{system} {theirs:.0} {unit}");
    println!("BENCH versus_{name}_ferrolb {ferrolb:.0} {unit}");
    if ferrolb > 0.0 {
        println!("BENCH versus_{name}_ratio {:.1} x", theirs / ferrolb);
    }
}

/// The lab with the IPs of its two Services.
struct Lab {
    lab: ChartLab,
    routed: String,
    web: String,
}

impl Lab {
    /// Waits until the ToR routes the BGP IP to every node, the client's requests to both
    /// IPs are answered, and node 2 owns the layer-2 IP.
    fn settled(&self, what: &str) -> Result<()> {
        wait_for(what, Duration::from_secs(120), || {
            Ok(self
                .lab
                .announced(&self.routed, &[&self.web])?
                .then_some(()))
        })?;
        // Node 2 answers for the layer-2 IP (the election gives it) once it is back.
        wait_for(
            "node 2 owning the layer-2 IP",
            Duration::from_secs(120),
            || Ok((self.lab.l2_owner(&self.web)? == 1).then_some(())),
        )
    }

    /// The median window of `count` failures of node 2's port under requests to `ip`.
    fn port_failures(&self, ip: &str, count: usize, system: &str, what: &str) -> Result<f64> {
        let mut runs = Vec::new();
        for _ in 0..count {
            if self.lab.l2_owner(&self.web)? != 1 {
                bail!("node 2 does not answer for {}", self.web);
            }
            let window = self
                .lab
                .port_failure_window(ip, 1, Duration::from_secs(120))?;
            runs.push(window.as_secs_f64() * 1e3);
            self.settled("node 2 back")?;
        }
        let text: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
        println!("{system} {what} windows (ms): {}", text.join(" "));
        Ok(median(runs))
    }

    /// `kubectl rollout restart` of DaemonSet `ds` under requests to the BGP IP.
    fn restart(&self, ds: &str, system: &str) -> Result<(usize, Sampled)> {
        let kubectl = self.lab.cluster.kubectl();
        let requests =
            RequestLoop::start(&self.lab.client, &self.routed, Duration::from_millis(20))?;
        let sampler = NexthopSampler::start(&self.lab.rtr, &self.routed);
        std::thread::sleep(Duration::from_secs(1));
        let ds = format!("ds/{ds}");
        kubectl.run(&["rollout", "restart", &ds, "-n", NS], None)?;
        kubectl.run(
            &["rollout", "status", &ds, "-n", NS, "--timeout=300s"],
            None,
        )?;
        self.settled("the speakers back")?;
        std::thread::sleep(Duration::from_secs(2));
        let sampled = sampler.finish();
        let results = requests.finish();
        let failed = results.iter().filter(|(_, ok)| !ok).count();
        println!(
            "{system} speaker restart: {failed} of {} requests failed, {} next hops withdrawn",
            results.len(),
            sampled.withdrawn
        );
        Ok((failed, sampled))
    }
}

/// The largest, over the nodes, of the summed resident memory (MiB) of the processes
/// `matches` accepts, with the per-node figures printed.
fn rss_mib(lab: &Lab, what: &str, matches: impl Fn(&[String]) -> bool + Copy) -> Result<f64> {
    let mut largest: f64 = 0.0;
    let mut text = Vec::new();
    for node in lab.lab.cluster.node_namespaces() {
        let (kib, processes) = rss::rss_kib(node, matches)?;
        if processes == 0 {
            bail!("no process of {what} found on {}", node.name());
        }
        let mib = kib as f64 / 1024.0;
        text.push(format!("{}: {mib:.1} MiB in {processes}", node.name()));
        largest = largest.max(mib);
    }
    println!("{what}: {}", text.join(", "));
    Ok(largest)
}

fn main() -> Result<()> {
    if !lab::bench_selected(&["versus"]) {
        return Ok(());
    }
    let started = Instant::now();
    let scratch = Scratch::new("versus")?;
    let built = metallb::built()?;
    let version = metallb::version(&built)?;
    let prefix = format!("flvs{}", std::process::id());
    let chart_lab = metallb::lab(&prefix, scratch.path(), &built)?;
    let kubectl = chart_lab.cluster.kubectl();
    metallb::install_native(&chart_lab, &built)?;
    let peer = "{myASN: 64512, peerASN: 64513, peerAddress: 10.95.0.1, holdTime: 3s}";
    let manifests = format!(
        "{}---\n{}---\n{}",
        l2_manifests(),
        bgp_manifests_with_peer(peer),
        survivor_manifests(&chart_lab.cluster)?
    );
    metallb::apply_when_admitted(kubectl, &manifests)?;
    let lab = Lab {
        routed: service_ip(&chart_lab.cluster, "survivor-bgp")?,
        web: service_ip(&chart_lab.cluster, "survivor-l2")?,
        lab: chart_lab,
    };
    lab.settled(&format!("MetalLB {version} announcing"))?;
    println!("MetalLB {version}: native BGP mode (hold time 3 s) and layer 2");

    let metallb_rss = rss_mib(&lab, "MetalLB's speaker", |argv| argv[0] == "/speaker")?;
    let metallb_l2 = lab.port_failures(&lab.web, 5, "metallb_l2", "layer-2 owner failure")?;
    let metallb_bgp = lab.port_failures(&lab.routed, 3, "metallb_native", "BGP node failure")?;
    let (metallb_restart_failed, metallb_restart) =
        lab.restart("metallb-speaker", "metallb_native")?;

    let how = match std::env::var("FERROLB_VERSUS_SWITCH").as_deref() {
        Ok("remove-first") => metallb::Switch::RemoveFirst,
        _ => metallb::Switch::NodeByNode,
    };
    println!("switch: {how:?}");
    let switched = metallb::switch_to_ferrolb(&lab.lab, &built, how, &lab.routed, &lab.web)?;
    println!(
        "switch: {} IPs changed {:?}; BGP IP {} of {} failed, layer-2 IP {} of {} failed; \
         {} next hops withdrawn, fewest {}; {} ms to all announced ({} ms after helm install)",
        switched.ip_changes.len(),
        switched.ip_changes,
        switched.bgp_requests.1,
        switched.bgp_requests.0,
        switched.l2_requests.1,
        switched.l2_requests.0,
        switched.hops.withdrawn,
        switched.hops.fewest,
        switched.total.as_millis(),
        switched.install_to_announced.as_millis()
    );
    println!(
        "BENCH versus_switch_ip_changes_ferrolb {} services",
        switched.ip_changes.len()
    );
    println!(
        "BENCH versus_switch_failed_requests_ferrolb {} requests",
        switched.bgp_requests.1 + switched.l2_requests.1
    );
    println!(
        "BENCH versus_switch_withdrawn_ferrolb {} nexthops",
        switched.hops.withdrawn
    );
    println!(
        "BENCH versus_switch_announced_ms_ferrolb {} ms",
        switched.total.as_millis()
    );

    // ferrolb with what MetalLB's native mode refuses: BFD and graceful restart.
    lab.lab.cluster.kubectl().apply(&bgp_manifests())?;
    lab.lab
        .wait_settled("ferrolb with BFD", &lab.routed, &[&lab.web])?;
    lab.settled("ferrolb announcing")?;
    let is_speaker = |argv: &[String]| {
        argv[0].ends_with("ferrolb") && argv.get(1).is_some_and(|a| a == "speaker")
    };
    let speaker_rss = rss_mib(&lab, "ferrolb's speaker", is_speaker)?;
    let frr_rss = rss_mib(&lab, "FRR in ferrolb's speaker pod", rss::is_frr_daemon)?;
    let ferrolb_rss = rss_mib(&lab, "ferrolb's speaker pod (speaker and FRR)", |argv| {
        is_speaker(argv) || rss::is_frr_daemon(argv)
    })?;
    println!("ferrolb: speaker {speaker_rss:.1} MiB, FRR {frr_rss:.1} MiB at most per node");
    let ferrolb_l2 = lab.port_failures(&lab.web, 5, "ferrolb", "layer-2 owner failure")?;
    let ferrolb_bgp = lab.port_failures(&lab.routed, 3, "ferrolb", "BGP node failure")?;
    let (ferrolb_restart_failed, ferrolb_restart) = lab.restart("speaker", "ferrolb")?;

    figure("l2_window", "ms", ("metallb_l2", metallb_l2), ferrolb_l2);
    figure(
        "speaker_rss_idle",
        "MiB",
        ("metallb_native", metallb_rss),
        ferrolb_rss,
    );
    figure(
        "bgp_failure_window",
        "ms",
        ("metallb_native", metallb_bgp),
        ferrolb_bgp,
    );
    figure(
        "speaker_restart_withdrawn",
        "nexthops",
        ("metallb_native", metallb_restart.withdrawn as f64),
        ferrolb_restart.withdrawn as f64,
    );
    figure(
        "speaker_restart_failed_requests",
        "requests",
        ("metallb_native", metallb_restart_failed as f64),
        ferrolb_restart_failed as f64,
    );
    println!("versus: {} s in all", started.elapsed().as_secs());
    Ok(())
}
