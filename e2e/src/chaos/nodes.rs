//! The chaos campaign on real nodes (`hack/chaos.sh --nodes`): the chart as shipped on two
//! kubelets ([`ChartLab`]), a client sending a request every 20 ms to each of two Services
//! whose one pod runs on node 1 — `survivor-bgp` (through the ToR, both nodes announcing it,
//! ECMP) and `survivor-l2` (the layer-2 IP the election gives node 2) — through storms of
//! overlapping faults of what runs on the nodes:
//!
//! - SIGKILL of FRR's bgpd or zebra on a node (watchfrr, in the frr container, starts them
//!   again), of the speaker's process (the kubelet restarts the container), the speaker's
//!   pod deleted (the DaemonSet makes a new one), the controller's pod deleted;
//! - node 2's switch port down, or flapping (node 1's is spared: the pod is there, and a
//!   Service whose only pod is cut off cannot answer, whoever announces it);
//! - kube-apiserver or etcd killed for a few seconds, then started again (while either is
//!   away or not yet serving, only faults that need no API server are drawn); a node's
//!   kubelet killed for a few seconds, then started again.
//!
//! Checked:
//!
//! - every failed request is excused by a fault that takes a node's FRR or link away (bgpd,
//!   zebra, the speaker's pod, the port), while it lasts and [`LINGER`] after; a speaker's or
//!   the controller's death must cost no request, nor the control plane's or a kubelet's
//!   going away;
//! - after each storm, within [`LIMIT`]: BFD up on both sessions, the ToR routing the BGP
//!   IP to both nodes, the client answered on both IPs, node 2 answering for its layer-2 IP
//!   again, every ferrolb pod a kubelet has reported on Ready ([`reported_pods_ready`]);
//! - no container restarts but those a fault caused (the frr container's never: its daemons
//!   are restarted inside it).
//!
//! It prints every fault as it happens, then the requests sent and failed, the longest
//! window of failed requests by fault kind, and the longest reconvergence; the draw is
//! seeded, as on the lab.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Rng, Violation};
use crate::chart_lab::{
    ChartLab, NS, RequestLoop, bgp_manifests, l2_manifests, pod_ready, service_ip,
    survivor_manifests,
};

/// How long after its fault ends a failed request is still excused (BFD's 300 ms, BGP
/// sessions coming back, a layer-2 IP moving back, with room for a loaded machine).
pub const LINGER: Duration = Duration::from_secs(5);
/// How long a node's FRR takes to come back after one of its daemons was killed: the
/// excuse of such a kill lasts this long, then [`LINGER`].
const FRR_RECOVERY: Duration = Duration::from_secs(10);
/// How long after a storm the cluster may take to agree.
pub const LIMIT: Duration = Duration::from_secs(40);
/// No fault for this long after a storm.
const QUIET: Duration = Duration::from_secs(10);
/// A node's speaker is killed at most once in this long: the kubelet waits 10 s after a
/// container's first crash, doubling with every crash in the next 10 minutes (a speaker in
/// that back-off is Kubernetes' doing, not ferrolb's).
const SPEAKER_KILL_SPACING: Duration = Duration::from_secs(300);
/// At most this many lasting faults at once.
const MAX_FAULTS: usize = 2;
/// A node (or the controller) a fault hit this recently is not hit again.
const RECENT: Duration = Duration::from_secs(5);

/// A fault of the campaign on nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeFault {
    /// FRR's bgpd killed (watchfrr starts it again).
    Bgpd,
    /// FRR's zebra killed (watchfrr starts the daemons again).
    Zebra,
    /// The speaker's process killed (the kubelet restarts its container).
    Speaker,
    /// The speaker's pod deleted (the DaemonSet makes another).
    SpeakerPod,
    /// The controller's pod deleted.
    Controller,
    /// Node 2's switch port down.
    PortDown,
    /// Node 2's switch port flapping.
    PortFlap,
    /// kube-apiserver killed, started again when the fault ends.
    ApiServer,
    /// etcd killed, started again when the fault ends.
    Etcd,
    /// A node's kubelet killed, started again when the fault ends.
    Kubelet,
}

impl NodeFault {
    /// Whether requests to `service` may fail because of it on `node`: it takes a node's
    /// FRR or link away, or it is the death of the speaker answering for the layer-2 IP
    /// (node 2's): the other speaker takes the IP over within a second and hands it back
    /// when the speaker is back, and each move breaks the connections in flight (the new
    /// node has no state for them). A controller's death never may, nor a speaker's for
    /// the BGP Service (FRR keeps announcing).
    pub fn may_fail_requests(self, node: Option<usize>, service: &str) -> bool {
        match self {
            NodeFault::Controller | NodeFault::ApiServer | NodeFault::Etcd | NodeFault::Kubelet => {
                false
            }
            NodeFault::Speaker => node == Some(1) && service == "survivor-l2",
            _ => true,
        }
    }

    /// Whether it lasts (a port, the control plane away) rather than happens once (a kill,
    /// a deletion).
    fn lasts(self) -> bool {
        matches!(
            self,
            NodeFault::PortDown
                | NodeFault::PortFlap
                | NodeFault::ApiServer
                | NodeFault::Etcd
                | NodeFault::Kubelet
        )
    }

    /// Whether it takes the control plane away.
    fn of_control_plane(self) -> bool {
        matches!(self, NodeFault::ApiServer | NodeFault::Etcd)
    }

    /// Whether injecting it needs the API server (to find or delete a pod).
    fn needs_api_server(self) -> bool {
        matches!(
            self,
            NodeFault::Speaker | NodeFault::SpeakerPod | NodeFault::Controller
        ) || self.of_control_plane()
    }

    /// The control plane's process it kills.
    fn component(self) -> Option<crate::control_plane::Component> {
        match self {
            NodeFault::ApiServer => Some(crate::control_plane::Component::ApiServer),
            NodeFault::Etcd => Some(crate::control_plane::Component::Etcd),
            _ => None,
        }
    }
}

/// A fault injected: what, where, and when it held.
#[derive(Clone, Debug)]
struct Injected {
    fault: NodeFault,
    node: Option<usize>,
    from: Instant,
    until: Instant,
    /// When a flapping port flips next, and whether it is up.
    next_flip: Instant,
    port_up: bool,
}

impl Injected {
    fn describe(&self) -> String {
        match self.node {
            Some(node) => format!("n{}: {:?}", node + 1, self.fault),
            None => format!("{:?}", self.fault),
        }
    }

    /// Until when a failed request is excused by it.
    fn excuses_until(&self) -> Instant {
        let recovered = if self.fault.lasts() {
            self.until
        } else {
            self.from + FRR_RECOVERY
        };
        recovered + LINGER
    }
}

/// A run of failed requests to one Service.
#[derive(Clone, Debug)]
pub struct Window {
    /// The Service.
    pub service: String,
    /// Seconds into the campaign of the first failed request.
    pub at: f64,
    /// From the first failed request's start to the next answered one's.
    pub length: Duration,
    /// The faults that excuse it (empty: none did).
    pub excused_by: Vec<String>,
}

/// What a campaign on nodes did and found.
#[derive(Debug, Default)]
pub struct NodesReport {
    /// The seed.
    pub seed: u64,
    /// Storms run.
    pub storms: u32,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u32>,
    /// Requests sent and how many failed.
    pub requests: usize,
    /// Of those, failed.
    pub failed: usize,
    /// Every run of failed requests.
    pub windows: Vec<Window>,
    /// Violations, in order.
    pub violations: Vec<Violation>,
    /// Every storm's time to agree, from its last fault healed.
    pub reconverge: Vec<Duration>,
}

impl NodesReport {
    /// The longest run of failed requests.
    pub fn longest_window(&self) -> Duration {
        self.windows
            .iter()
            .map(|w| w.length)
            .max()
            .unwrap_or_default()
    }

    /// The longest reconvergence.
    pub fn reconverge_max(&self) -> Duration {
        self.reconverge.iter().copied().max().unwrap_or_default()
    }

    /// The summary printed at the end.
    pub fn summary(&self, minutes: f64) -> String {
        let injected: u32 = self.faults.values().sum();
        let mut out = format!(
            "chaos on nodes: seed {}, {} storms, {injected} faults injected\n",
            self.seed, self.storms
        );
        for (kind, count) in &self.faults {
            out.push_str(&format!("  {count:4}  {kind}\n"));
        }
        let rate = if self.requests == 0 {
            0.0
        } else {
            100.0 * (self.requests - self.failed) as f64 / self.requests as f64
        };
        out.push_str(&format!(
            "requests: {} sent, {} failed ({rate:.3} % answered); {} windows of failures, the longest {} ms\n",
            self.requests,
            self.failed,
            self.windows.len(),
            self.longest_window().as_millis()
        ));
        let mut by_kind: BTreeMap<String, Duration> = BTreeMap::new();
        for w in &self.windows {
            let key = if w.excused_by.is_empty() {
                "no fault".to_string()
            } else {
                w.excused_by.join(" + ")
            };
            let longest = by_kind.entry(key).or_default();
            *longest = (*longest).max(w.length);
        }
        for (kind, longest) in &by_kind {
            out.push_str(&format!(
                "  longest window during {kind}: {} ms\n",
                longest.as_millis()
            ));
        }
        let mut times = self.reconverge.clone();
        times.sort();
        let p50 = times.get(times.len() / 2).copied().unwrap_or_default();
        out.push_str(&format!(
            "reconvergence after a storm (BFD, ToR routes, answers, layer-2 owner, pods Ready): median {:.1} s, longest {:.1} s\n",
            p50.as_secs_f64(),
            self.reconverge_max().as_secs_f64()
        ));
        out.push_str(&super::violations_text(
            &self.violations,
            &format!(
                "hack/chaos.sh --nodes --seed {} --minutes {minutes}",
                self.seed
            ),
        ));
        out
    }

    /// The benchmark lines: `chaos_nodes_violations`, `chaos_nodes_failed_window_max_ms`,
    /// `chaos_nodes_reconverge_max_ms`.
    pub fn bench_lines(&self) -> String {
        format!(
            "BENCH chaos_nodes_violations {} count\nBENCH chaos_nodes_failed_window_max_ms {} ms\nBENCH chaos_nodes_reconverge_max_ms {} ms\n",
            self.violations.len(),
            self.longest_window().as_millis(),
            self.reconverge_max().as_millis()
        )
    }
}

/// How a campaign on nodes runs.
#[derive(Debug, Clone)]
pub struct NodesOptions {
    /// Its length (the cluster's start comes on top).
    pub minutes: f64,
    /// The seed of its draws.
    pub seed: u64,
    /// Where the cluster's files go.
    pub dir: PathBuf,
}

/// The speaker pod on `node` (its name), if there is one.
fn speaker_pod(lab: &ChartLab, node: usize) -> Result<Option<String>> {
    let name = &lab.cluster.names()[node];
    let pods = lab.cluster.kubectl().get(&[
        "pods",
        "-n",
        NS,
        "-l",
        "component=speaker",
        "--field-selector",
        &format!("spec.nodeName={name}"),
    ])?;
    Ok(pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .find_map(|p| p["metadata"]["name"].as_str().map(str::to_string)))
}

/// Restarts of each container of every ferrolb pod: (pod, container) to count.
fn restarts(lab: &ChartLab) -> Result<BTreeMap<(String, String), u64>> {
    let pods = lab.cluster.kubectl().get(&["pods", "-n", NS])?;
    let mut out = BTreeMap::new();
    for pod in pods["items"].as_array().into_iter().flatten() {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        for status in pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.insert(
                (
                    name.to_string(),
                    status["name"].as_str().unwrap_or_default().to_string(),
                ),
                status["restartCount"].as_u64().unwrap_or(0),
            );
        }
    }
    Ok(out)
}

/// Of ferrolb's pods that a kubelet has reported on and that are not being deleted, how many
/// are Ready, and how many there are. A pod no kubelet has reported on yet (no container
/// statuses: unscheduled, or its kubelet not yet told) and one being deleted are the control
/// plane's to finish: after kube-apiserver restarts, a kubelet may learn of new and deleted
/// pods late (seen: a controller replica's replacement reached its kubelet 55 s after it was
/// made; the kubelet's watches had been refused as the API server came back — the node
/// authorizer not yet knowing its pods — and client-go's retries back off).
fn reported_pods_ready(lab: &ChartLab) -> Result<(usize, usize)> {
    let pods = lab.cluster.kubectl().get(&["pods", "-n", NS])?;
    let reported: Vec<&serde_json::Value> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            ["containerStatuses", "initContainerStatuses"]
                .iter()
                .any(|k| p["status"][k].as_array().is_some_and(|s| !s.is_empty()))
        })
        .collect();
    let ready = reported.iter().filter(|p| pod_ready(p)).count();
    Ok((ready, reported.len()))
}

/// The campaign's state.
struct Campaign<'a> {
    lab: &'a ChartLab,
    dir: PathBuf,
    start: Instant,
    bgp_ip: String,
    l2_ip: String,
    report: NodesReport,
    injected: Vec<Injected>,
    /// When each node's speaker was last killed (`None`: never, or its pod is new).
    speaker_killed: [Option<Instant>; 2],
    /// Restarts of each (pod, container) already accounted for: the speaker kills, and
    /// those already reported.
    restarts_seen: BTreeMap<(String, String), u64>,
    /// Each storm's span: from its start until the cluster agreed again (or the limit).
    storms: Vec<(Instant, Instant)>,
}

impl Campaign<'_> {
    fn say(&self, text: &str) {
        println!("[{:7.1}s] {text}", self.start.elapsed().as_secs_f64());
    }

    fn violate(&mut self, what: String) {
        let at = self.start.elapsed().as_secs_f64();
        println!("[{at:7.1}s] VIOLATION: {what}");
        self.report.violations.push(Violation { at, what });
    }

    /// Draws a fault that may start now, given those `active`.
    fn draw(&self, rng: &mut Rng, active: &[Injected]) -> Option<(NodeFault, Option<usize>)> {
        let kinds = [
            NodeFault::Bgpd,
            NodeFault::Zebra,
            NodeFault::Speaker,
            NodeFault::SpeakerPod,
            NodeFault::Controller,
            NodeFault::PortDown,
            NodeFault::PortFlap,
            NodeFault::ApiServer,
            NodeFault::Etcd,
            NodeFault::Kubelet,
        ];
        // While the control plane is away or coming back, only what needs no API server.
        let api_server = !active.iter().any(|a| a.fault.of_control_plane()) && self.api_ready();
        for _ in 0..10 {
            let fault = kinds[rng.below(kinds.len() as u64) as usize];
            if fault.needs_api_server() && !api_server {
                continue;
            }
            let node = match fault {
                NodeFault::Controller | NodeFault::ApiServer | NodeFault::Etcd => None,
                NodeFault::PortDown | NodeFault::PortFlap => Some(1),
                _ => Some(rng.below(2) as usize),
            };
            // One fault at a time per node (and for the controller), a kill's node left
            // alone for a few seconds.
            let busy = active.iter().any(|a| a.node == node)
                || self
                    .injected
                    .iter()
                    .any(|f| f.node == node && f.from.elapsed() < RECENT);
            let speaker_resting = fault == NodeFault::Speaker
                && node.is_some_and(|n| {
                    self.speaker_killed[n].is_some_and(|at| at.elapsed() < SPEAKER_KILL_SPACING)
                });
            if !busy && !speaker_resting {
                return Some((fault, node));
            }
        }
        None
    }

    /// Injects `fault` on `node`, for `duration` if it lasts; `None` when there was nothing
    /// to kill (it was being restarted).
    fn inject(
        &mut self,
        rng: &mut Rng,
        fault: NodeFault,
        node: Option<usize>,
        duration: Duration,
    ) -> Result<Option<Injected>> {
        let kubectl = self.lab.cluster.kubectl();
        let from = Instant::now();
        match (fault, node) {
            (NodeFault::Bgpd, Some(n)) => {
                if self.lab.kill_on_node(n, "bgpd")?.is_empty() {
                    return Ok(None);
                }
            }
            (NodeFault::Zebra, Some(n)) => {
                if self.lab.kill_on_node(n, "zebra")?.is_empty() {
                    return Ok(None);
                }
            }
            (NodeFault::Speaker, Some(n)) => {
                let Some(pod) = speaker_pod(self.lab, n)? else {
                    return Ok(None);
                };
                if self.lab.kill_on_node(n, "ferrolb")?.is_empty() {
                    return Ok(None);
                }
                *self
                    .restarts_seen
                    .entry((pod, "speaker".to_string()))
                    .or_default() += 1;
                self.speaker_killed[n] = Some(from);
            }
            (NodeFault::SpeakerPod, Some(n)) => {
                let Some(pod) = speaker_pod(self.lab, n)? else {
                    return Ok(None);
                };
                kubectl.run(&["delete", "pod", "-n", NS, &pod, "--wait=false"], None)?;
                self.speaker_killed[n] = None;
            }
            (NodeFault::Controller, _) => {
                // One of the replicas, the leader or not.
                let pods = kubectl.get(&["pods", "-n", NS, "-l", "component=controller"])?;
                let names: Vec<String> = pods["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                    .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
                    .collect();
                if names.is_empty() {
                    return Ok(None);
                }
                let pod = &names[rng.below(names.len() as u64) as usize];
                kubectl.run(&["delete", "pod", "-n", NS, pod, "--wait=false"], None)?;
            }
            (NodeFault::PortDown | NodeFault::PortFlap, Some(n)) => {
                self.lab
                    .cluster
                    .switch()
                    .set_port(&format!("n{}", n + 1), false)?;
            }
            (NodeFault::Kubelet, Some(n)) => self.lab.cluster.nodes()[n].kill_kubelet()?,
            (NodeFault::ApiServer | NodeFault::Etcd, _) => {
                if let Some(component) = fault.component() {
                    self.lab.cluster.plane().kill(component)?;
                }
            }
            _ => anyhow::bail!("{fault:?} needs a node"),
        }
        Ok(Some(Injected {
            fault,
            node,
            from,
            until: from
                + if fault.lasts() {
                    duration
                } else {
                    Duration::ZERO
                },
            next_flip: from + Duration::from_millis(rng.between(300, 1_000)),
            port_up: false,
        }))
    }

    /// Ends what lasts of `fault` (a port comes back up, the control plane's process is
    /// started again).
    fn heal(&self, fault: &Injected) -> Result<()> {
        if let Some(component) = fault.fault.component() {
            return self.lab.cluster.plane().start_again(component);
        }
        if let (NodeFault::Kubelet, Some(n)) = (fault.fault, fault.node) {
            return self.lab.cluster.nodes()[n].start_kubelet_again();
        }
        if let (true, Some(n)) = (fault.fault.lasts(), fault.node) {
            self.lab
                .cluster
                .switch()
                .set_port(&format!("n{}", n + 1), true)?;
        }
        Ok(())
    }

    /// Whether the API server answers `/readyz` (within 3 s).
    fn api_ready(&self) -> bool {
        self.lab
            .cluster
            .kubectl()
            .run(&["get", "--raw", "/readyz", "--request-timeout=3s"], None)
            .is_ok_and(|text| text.trim() == "ok")
    }

    /// What still differs from the settled cluster (empty: it agrees).
    fn differences(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let bfd = self.lab.tor.json("show bfd peers json")?;
        let up = bfd
            .as_array()
            .map(|p| p.iter().filter(|p| p["status"] == "up").count())
            .unwrap_or(0);
        if up != 2 {
            out.push(format!("{up} of 2 BFD sessions up at the ToR"));
        }
        let mut want = self.lab.cluster.addresses().to_vec();
        want.sort();
        let mut hops = crate::lab::nexthops(&self.lab.rtr, &self.bgp_ip)?;
        hops.sort();
        if hops != want {
            out.push(format!("the ToR routes {} via {hops:?}", self.bgp_ip));
        }
        for ip in [&self.bgp_ip, &self.l2_ip] {
            if !self.lab.answered(ip) {
                out.push(format!("{ip} not answered"));
            }
        }
        match self.lab.l2_owner(&self.l2_ip) {
            Ok(1) => {}
            Ok(n) => out.push(format!("node {} answers for {}", n + 1, self.l2_ip)),
            Err(error) => out.push(format!("{error:#}")),
        }
        if !self.api_ready() {
            out.push("the API server not ready".to_string());
            return Ok(out);
        }
        match reported_pods_ready(self.lab) {
            Ok((ready, all)) if ready != all || all < 3 => {
                out.push(format!("{ready} of {all} ferrolb pods Ready"));
            }
            Ok(_) => {}
            Err(error) => out.push(format!("pods not read: {error:#}")),
        }
        Ok(out)
    }

    /// Keeps what the ToR, each node's FRR and the ferrolb pods say now in
    /// `diagnosis/storm-N/` of the campaign's directory (the cluster and its logs go at the
    /// end).
    fn keep_diagnosis(&self) {
        let dir = self
            .dir
            .join(format!("diagnosis/storm-{}", self.report.storms));
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        let kubectl = self.lab.cluster.kubectl();
        let mut files: Vec<(String, String)> = Vec::new();
        for command in ["show bgp summary", "show bfd peers", "show ip route"] {
            let out = self
                .lab
                .tor
                .vtysh(command)
                .unwrap_or_else(|e| format!("{e:#}"));
            files.push((format!("tor {command}"), out));
        }
        for node in 0..2 {
            let Ok(Some(pod)) = speaker_pod(self.lab, node) else {
                continue;
            };
            for command in ["show bgp summary", "show bfd peers", "show running-config"] {
                let out = kubectl
                    .run(
                        &[
                            "exec", "-n", NS, &pod, "-c", "frr", "--", "vtysh", "-c", command,
                        ],
                        None,
                    )
                    .unwrap_or_else(|e| format!("{e:#}"));
                files.push((format!("n{} {command}", node + 1), out));
            }
        }
        let pods = kubectl
            .run(&["get", "pods", "-n", NS, "-o", "name"], None)
            .unwrap_or_default();
        for pod in pods.lines() {
            for container in ["speaker", "frr", "controller"] {
                for previous in [false, true] {
                    let mut args = vec!["logs", "-n", NS, pod, "-c", container];
                    if previous {
                        args.push("--previous");
                    }
                    if let Ok(out) = kubectl.run(&args, None) {
                        let name = pod.trim_start_matches("pod/");
                        let tag = if previous { ".previous" } else { "" };
                        files.push((format!("{name} {container}{tag}"), out));
                    }
                }
            }
        }
        for (name, text) in files {
            let _ = std::fs::write(dir.join(name.replace(' ', "_")), text);
        }
        self.say(&format!("kept the cluster's state in {}", dir.display()));
    }

    /// Containers restarted that no fault restarted (not read while the API server is away:
    /// the next storm's check counts them).
    fn check_restarts(&mut self) -> Result<()> {
        let counts = match restarts(self.lab) {
            Ok(counts) => counts,
            Err(error) => {
                self.say(&format!("restarts not read: {error:#}"));
                return Ok(());
            }
        };
        for (key, count) in counts {
            let allowed = self.restarts_seen.get(&key).copied().unwrap_or(0);
            if count > allowed {
                let (pod, container) = &key;
                self.violate(format!(
                    "container {container} of pod {pod} restarted {count} times, {allowed} by faults or already reported"
                ));
                // Counted once.
                self.restarts_seen.insert(key, count);
            }
        }
        Ok(())
    }
}

/// Runs a campaign on real nodes it brings up in `options.dir` and takes down at the end.
pub fn run_on_nodes(options: &NodesOptions) -> Result<NodesReport> {
    let prefix = format!("flcx{}", std::process::id());
    std::fs::create_dir_all(&options.dir)?;
    let lab = ChartLab::start(&prefix, &options.dir)?;
    let kubectl = lab.cluster.kubectl();
    kubectl.apply(&l2_manifests())?;
    kubectl.apply(&bgp_manifests())?;
    kubectl.apply(&survivor_manifests(&lab.cluster)?)?;
    let bgp_ip = service_ip(&lab.cluster, "survivor-bgp")?;
    let l2_ip = service_ip(&lab.cluster, "survivor-l2")?;
    lab.wait_settled("ECMP, BFD and answers before any fault", &bgp_ip, &[&l2_ip])?;
    let mut campaign = Campaign {
        lab: &lab,
        dir: options.dir.clone(),
        start: Instant::now(),
        bgp_ip: bgp_ip.clone(),
        l2_ip: l2_ip.clone(),
        report: NodesReport {
            seed: options.seed,
            ..NodesReport::default()
        },
        injected: Vec::new(),
        speaker_killed: [None, None],
        restarts_seen: BTreeMap::new(),
        storms: Vec::new(),
    };
    // Settled is one look at each thing; agreeing is every check of the campaign's at once,
    // given the time it gives the cluster after a fault. What differed at first is said.
    let mut first: Option<Vec<String>> = None;
    loop {
        let differences = campaign.differences()?;
        if differences.is_empty() {
            break;
        }
        if campaign.start.elapsed() > LIMIT {
            anyhow::bail!(
                "the cluster does not agree before any fault after {LIMIT:?}: {differences:?} \
                 (at first: {first:?})"
            );
        }
        first.get_or_insert(differences);
        std::thread::sleep(Duration::from_millis(500));
    }
    if let Some(first) = first {
        campaign.say(&format!(
            "before any fault, at first {first:?}; agreeing after {:.1} s",
            campaign.start.elapsed().as_secs_f64()
        ));
    }
    campaign.check_restarts()?;
    if !campaign.report.violations.is_empty() {
        anyhow::bail!("containers restarted before any fault");
    }
    campaign.say("nodes up and agreeing; the campaign begins");
    let every = Duration::from_millis(20);
    let loops = [
        (
            "survivor-bgp",
            RequestLoop::start(&lab.client, &bgp_ip, every)?,
        ),
        (
            "survivor-l2",
            RequestLoop::start(&lab.client, &l2_ip, every)?,
        ),
    ];
    let mut rng = Rng::new(options.seed);
    let deadline = campaign.start + Duration::from_secs_f64(options.minutes * 60.0);
    let outcome = storms(&mut campaign, &mut rng, deadline);
    // Whatever happened, the port comes back and the loops stop.
    let _ = lab.cluster.switch().set_port("n2", true);
    let mut results = Vec::new();
    for (service, requests) in loops {
        results.push((service, requests.finish()));
    }
    outcome?;
    judge(&mut campaign, &results);
    Ok(campaign.report)
}

/// Storms until `deadline`, each followed by its check.
fn storms(campaign: &mut Campaign<'_>, rng: &mut Rng, deadline: Instant) -> Result<()> {
    while Instant::now() < deadline {
        campaign.report.storms += 1;
        let length = Duration::from_millis(rng.between(15_000, 30_000))
            .min(deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_secs(5));
        let storm_start = Instant::now();
        let storm_end = storm_start + length;
        campaign.say(&format!(
            "storm {} for {:.0} s",
            campaign.report.storms,
            length.as_secs_f64()
        ));
        let mut active: Vec<Injected> = Vec::new();
        let mut next_fault = Instant::now() + Duration::from_millis(rng.between(0, 2_000));
        while Instant::now() < storm_end || !active.is_empty() {
            let now = Instant::now();
            let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut active)
                .into_iter()
                .partition(|a| a.until <= now || now >= storm_end);
            active = keep;
            for mut fault in due {
                campaign.heal(&fault)?;
                fault.until = fault.until.min(Instant::now()).max(fault.from);
                if fault.fault.lasts() {
                    campaign.say(&format!("healed: {}", fault.describe()));
                }
                campaign.injected.push(fault);
            }
            for fault in active.iter_mut().filter(|a| a.fault == NodeFault::PortFlap) {
                if Instant::now() >= fault.next_flip {
                    fault.port_up = !fault.port_up;
                    if let Some(n) = fault.node {
                        campaign
                            .lab
                            .cluster
                            .switch()
                            .set_port(&format!("n{}", n + 1), fault.port_up)?;
                    }
                    fault.next_flip =
                        Instant::now() + Duration::from_millis(rng.between(300, 1_000));
                }
            }
            if now < storm_end && now >= next_fault && active.len() < MAX_FAULTS {
                if let Some((fault, node)) = campaign.draw(rng, &active) {
                    let duration = Duration::from_millis(rng.between(1_000, 6_000));
                    let Some(injected) = campaign.inject(rng, fault, node, duration)? else {
                        campaign.say(&format!("skipped {fault:?}: nothing to kill"));
                        next_fault = Instant::now() + Duration::from_millis(500);
                        continue;
                    };
                    let what = injected.describe();
                    if fault.lasts() {
                        campaign.say(&format!(
                            "fault: {what} for {:.1} s",
                            duration.as_secs_f64()
                        ));
                        active.push(injected);
                    } else {
                        campaign.say(&format!("fault: {what}"));
                        campaign.injected.push(injected);
                    }
                    *campaign
                        .report
                        .faults
                        .entry(format!("{fault:?}"))
                        .or_default() += 1;
                }
                next_fault = Instant::now() + Duration::from_millis(rng.between(2_000, 6_000));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let healed = Instant::now();
        campaign.say("quiet");
        let mut last = Vec::new();
        let agreed = loop {
            let differences = campaign.differences()?;
            if differences.is_empty() {
                break Some(healed.elapsed());
            }
            last = differences;
            if healed.elapsed() > QUIET + LIMIT {
                break None;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        match agreed {
            Some(took) => {
                let last = if last.is_empty() {
                    String::new()
                } else {
                    format!("; the last to settle: {}", last.join("; "))
                };
                campaign.say(&format!(
                    "agreeing {:.1} s after the storm{last}",
                    took.as_secs_f64()
                ));
                campaign.report.reconverge.push(took);
            }
            None => {
                let limit = (QUIET + LIMIT).as_secs();
                campaign.violate(format!(
                    "storm {}: not agreeing {limit} s after its last fault healed: {}",
                    campaign.report.storms,
                    last.join("; ")
                ));
                campaign.report.reconverge.push(healed.elapsed());
                campaign.keep_diagnosis();
            }
        }
        campaign.storms.push((storm_start, Instant::now()));
        campaign.check_restarts()?;
        std::thread::sleep(QUIET.saturating_sub(healed.elapsed()));
    }
    Ok(())
}

/// Cuts each Service's results into runs of failed requests, and judges each by the faults
/// that held around it.
fn judge(campaign: &mut Campaign<'_>, results: &[(&str, Vec<(Instant, bool)>)]) {
    for (service, outcomes) in results {
        campaign.report.requests += outcomes.len();
        campaign.report.failed += outcomes.iter().filter(|(_, ok)| !ok).count();
        let mut i = 0;
        while i < outcomes.len() {
            if outcomes[i].1 {
                i += 1;
                continue;
            }
            let first = outcomes[i].0;
            let mut j = i;
            while j < outcomes.len() && !outcomes[j].1 {
                j += 1;
            }
            let last = outcomes[j - 1].0;
            let end = outcomes.get(j).map_or(last, |(at, _)| *at);
            // A fault excuses failures from its start until it is over, or until its storm's
            // cluster agreed again if that is later (sessions coming back move next hops,
            // and a moved flow breaks), and LINGER after.
            let storms = &campaign.storms;
            let excused_by: Vec<String> = campaign
                .injected
                .iter()
                .filter(|f| {
                    let settled = storms
                        .iter()
                        .find(|(from, to)| *from <= f.from && f.from <= *to)
                        .map_or(f.excuses_until(), |(_, to)| {
                            f.excuses_until().max(*to + LINGER)
                        });
                    f.fault.may_fail_requests(f.node, service)
                        && first + Duration::from_secs(1) >= f.from
                        && last <= settled
                })
                .map(Injected::describe)
                .collect();
            let window = Window {
                service: (*service).to_string(),
                at: first.duration_since(campaign.start).as_secs_f64(),
                length: end.duration_since(first),
                excused_by,
            };
            if window.excused_by.is_empty() {
                let during: Vec<String> = campaign
                    .injected
                    .iter()
                    .filter(|f| {
                        first + Duration::from_secs(1) >= f.from && last <= f.excuses_until()
                    })
                    .map(Injected::describe)
                    .collect();
                campaign.violate(format!(
                    "{} requests to {service} failed from {:.1} s for {} ms, with no fault of a node's FRR or link to excuse them (faults then: {})",
                    j - i,
                    window.at,
                    window.length.as_millis(),
                    if during.is_empty() {
                        "none".to_string()
                    } else {
                        during.join(", ")
                    }
                ));
            }
            campaign.report.windows.push(window);
            i = j;
        }
    }
    campaign
        .report
        .violations
        .sort_by(|a, b| a.at.total_cmp(&b.at));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injected(fault: NodeFault, from: Instant, until: Instant) -> Injected {
        Injected {
            fault,
            node: Some(1),
            from,
            until,
            next_flip: from,
            port_up: false,
        }
    }

    #[test]
    fn a_kill_excuses_until_frr_is_back_and_a_port_until_it_is_up() {
        let t = Instant::now();
        let kill = injected(NodeFault::Bgpd, t, t);
        assert_eq!(kill.excuses_until(), t + FRR_RECOVERY + LINGER);
        let port = injected(NodeFault::PortDown, t, t + Duration::from_secs(3));
        assert_eq!(port.excuses_until(), t + Duration::from_secs(3) + LINGER);
        assert!(!NodeFault::Speaker.may_fail_requests(Some(0), "survivor-l2"));
        assert!(!NodeFault::Speaker.may_fail_requests(Some(1), "survivor-bgp"));
        assert!(NodeFault::Speaker.may_fail_requests(Some(1), "survivor-l2"));
        assert!(!NodeFault::Controller.may_fail_requests(None, "survivor-bgp"));
        assert!(!NodeFault::ApiServer.may_fail_requests(None, "survivor-l2"));
        assert!(!NodeFault::Etcd.may_fail_requests(None, "survivor-bgp"));
        assert!(!NodeFault::Kubelet.may_fail_requests(Some(1), "survivor-l2"));
        assert!(NodeFault::SpeakerPod.may_fail_requests(Some(0), "survivor-bgp"));
    }
}
