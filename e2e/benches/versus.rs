//! ferrolb and MetalLB side by side on the same real nodes, ToR, client and manifests
//! ([`ferrolb_e2e::metallb`]), in one run: MetalLB in the modes `FERROLB_VERSUS_MODES` lists
//! (`native,frrk8s,frr`: native BGP, then FRR-K8s with frr-k8s's daemon and FRR, then FRR),
//! each with `FERROLB_VERSUS_SERVICES` (1,000) Services of a bulk pool announced besides the
//! probes; then the switch to ferrolb as the README tells a user
//! (from the last mode, the Services and objects kept), then ferrolb. A request every 20 ms
//! from the client to a Service's IP counts failures, as in `benches/traffic.rs`; the
//! Services' one pod runs on node 1, and node 2 is the one that fails.
//!
//! Figures (`BENCH versus_<figure>_<system>`, and `versus_<figure>_ratio_<system>`: MetalLB's
//! over ferrolb's, > 1 when ferrolb does better); `<system>` is `metallb_native`,
//! `metallb_frrk8s`, `metallb_frr`, `metallb_l2`, `metallb` (its controller, the same in
//! every mode) or `ferrolb`; `<n>` is the load (`1k`):
//! - `converge_p50_<n>`, `converge_p99_<n>`, `withdraw_p50_<n>`: `FERROLB_VERSUS_PROBES` (20)
//!   Services created and deleted one at a time, each with its IP pinned: from the create
//!   leaving the bench's own API client to the ToR's kernel routing the IP (`ip monitor
//!   route`), and from the delete leaving it to the route leaving the kernel (the API
//!   server's answer times printed beside). Each probe is created on a system at
//!   rest ([`at_rest`]: its controller and speaker pods idle), not behind the work the probe
//!   before left (MetalLB v0.16's speakers and controller take about 6 s to settle after a
//!   deletion with 1,000 Services announced, about 20 s with 10,000).
//! - `speaker_rss_<n>`: the resident memory of a node's speaker pod, the larger node: the
//!   speaker, and the FRR daemons and frr-k8s's daemon where the mode runs them (ferrolb's:
//!   its speaker and FRR).
//! - `speaker_cpu_<n>`: the CPU seconds a node's speaker pod (the same processes) has used,
//!   the larger node, measured with the memory: from its start (MetalLB's: installed, then
//!   the load created; ferrolb's: installed in the switch, taking the load over) until it
//!   announces the load and has settled. A MetalLB that stalled and had its speakers
//!   restarted counts from the restart.
//! - `bgp_failure_window`: node 2's port down, a BGP IP routed to both nodes (median of 3).
//!   MetalLB's native mode has no BFD, so its peer gets the shortest hold time BGP allows
//!   (3 s; MetalLB's default is 90 s); the FRR modes and ferrolb use a BFD profile
//!   (100 ms × 3).
//! - `advertisement_change_<n>`, `advertisement_change_resets`: a community added to the
//!   bulk pool's BGPAdvertisement with `kubectl patch`, then taken away: the mean time until
//!   every bulk path at the ToR carries it (then none does), and the BGP sessions the ToR
//!   saw reset meanwhile (if any, why each neighbour's session last ended, as the ToR's bgpd
//!   says; its log file has every session change).
//! - `peer_change`, `peer_change_resets`: BGPPeer `tor`'s `bfdProfile` patched from `fast`
//!   (100 ms) to `steady` (200 ms) and back: the mean time until every node's BFD session
//!   at the ToR is up and asks for the new receive interval, and the BGP sessions the ToR
//!   saw reset meanwhile. Not in native mode, which has no BFD.
//! - `l2_window`: node 2, owner of a layer-2 IP, loses its switch port; the window of failed
//!   requests (median of 5; the port comes back once requests are answered again). MetalLB:
//!   memberlist's failure detection (the same in every mode, measured in native mode);
//!   ferrolb: its gossip.
//! - `speaker_restart_withdrawn` and `speaker_restart_failed_requests`: `kubectl rollout
//!   restart` of the speaker DaemonSet under requests to the BGP IP: next hops the ToR
//!   withdrew, requests failed. MetalLB's native mode refuses graceful restart; ferrolb's
//!   peer enables it.
//! - `allocate_<m>`, `allocate_first_<m>`, `controller_rss_<m>`: the controller Deployment
//!   scaled to none, `FERROLB_VERSUS_ALLOCATE` (10,000) Services created in a pool nothing
//!   advertises (so no speaker works on them), the Deployment scaled back: the time from
//!   `kubectl scale` returning to the last (and to the first: the pod's start) being given
//!   an IP, as a watch of them shows; then the largest controller process's resident memory
//!   (the leader's; ferrolb runs two replicas). `<m>` is the backlog (`10k`); the Services
//!   are deleted afterwards.
//! - `switch_ip_changes`, `switch_failed_requests` (BGP and layer-2 IPs together),
//!   `switch_withdrawn`, `switch_announced_ms`: the switch itself ([`metallb::switch_to_ferrolb`]),
//!   node by node as the README recommends ([`metallb::hand_over`]), or with
//!   `FERROLB_VERSUS_SWITCH=remove-first` MetalLB removed before ferrolb is installed (and on
//!   the way back, below, ferrolb uninstalled before MetalLB is installed rather than
//!   [`metallb::hand_back`] node by node). Printed with it: the machine's CPU use by program
//!   across the switch, and around each burst of failed requests ([`ferrolb_e2e::cpu`]).
//! - With `FERROLB_VERSUS_ONLY=memory`, only `speaker_rss_<n>`, `speaker_cpu_<n>` and the
//!   switch are measured: with 10,000 Services MetalLB's timed figures take hours (each
//!   probe's deletion has its controller write every Service's status again, at 20 a second).
//!   With `FERROLB_VERSUS_ONLY=converge`, those and `converge_p50_<n>`, `converge_p99_<n>`
//!   and `withdraw_p50_<n>`: no change, restart or failure.
//! - `stalls_metallb`: times MetalLB did not settle within 120 s of a fault (its layer-2 IP
//!   left unanswered by every node after a port flap) and its speakers were restarted so
//!   that the run could go on; the figure measured across a stall includes those 120 s.
//!
//! The systems run one after the other on one cluster. With `FERROLB_VERSUS_ROUNDS` (1) above
//! one they alternate: after ferrolb, the README's way back to MetalLB
//! ([`metallb::roll_back`]: node by node, ferrolb's speaker leaving a node and MetalLB in the
//! first mode put there, the objects and IPs kept; printed as `roll-back:`, under the same
//! request loops as the switch), then every mode and the switch and ferrolb again. Each figure then pools the rounds: the
//! probes' times together, the median of the other figures of a system, the sessions reset
//! and the switches' IP changes, failed requests and withdrawn next hops summed, the median
//! of their times. The layer-2 window, the speaker restart and the controller's figures are
//! measured once for each (MetalLB's in the first round, ferrolb's after the last). From the
//! second round on, MetalLB's speaker CPU counts from its install onto the loaded cluster,
//! as ferrolb's always does. Needs root, what `tests/chart_on_nodes.rs` needs and the go
//! command (`hack/metallb.sh`).

#[path = "common/api.rs"]
mod api;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use ferrolb_e2e::chart_lab::{
    ChartLab, NS, RequestLoop, bgp_manifests, bgp_manifests_with_peer, crash_looping, l2_manifests,
    service_ip, survivor_manifests,
};
use ferrolb_e2e::kubectl::Kubectl;
use ferrolb_e2e::lab;
use ferrolb_e2e::metallb::{self, Mode};
use ferrolb_e2e::netns::Netns;
use ferrolb_e2e::paths::{self, Scratch};
use ferrolb_e2e::process::wait_for;
use ferrolb_e2e::rss;
use ferrolb_e2e::sampler::{NexthopSampler, RouteMonitor, Sampled, median, percentile};

/// Prints what a switch between MetalLB and ferrolb (`what`: `switch`, `roll-back`) did.
fn report(what: &str, switched: &metallb::Switched) {
    println!(
        "{what}: {} IPs changed {:?}; BGP IP {} of {} failed, layer-2 IP {} of {} failed; \
         {} next hops withdrawn, fewest {}; {} ms to all announced ({} ms after helm install); \
         the last pod of the system replaced gone after {} ms",
        switched.ip_changes.len(),
        switched.ip_changes,
        switched.bgp_requests.1,
        switched.bgp_requests.0,
        switched.l2_requests.1,
        switched.l2_requests.0,
        switched.hops.withdrawn,
        switched.hops.fewest,
        switched.total.as_millis(),
        switched.install_to_announced.as_millis(),
        switched.old_gone.as_millis()
    );
}

/// The BGPPeer and BFD profiles MetalLB in `mode` is given: native mode refuses BFD and
/// graceful restart, so its peer gets the shortest hold time BGP allows and there is no BFD
/// profile; the FRR modes get [`bfd_manifests`].
fn peer_manifests(mode: Mode) -> String {
    if mode == Mode::Native {
        bgp_manifests_with_peer(
            "{myASN: 64512, peerASN: 64513, peerAddress: 10.95.0.1, holdTime: 3s}",
        )
    } else {
        bfd_manifests()
    }
}

/// Puts the objects as MetalLB in `mode` takes them ([`peer_manifests`]), while neither
/// MetalLB nor ferrolb is installed: for native mode, the BFD profiles deleted.
fn prepare_mode(kubectl: &Kubectl, mode: Mode) -> Result<()> {
    kubectl.apply(&peer_manifests(mode))?;
    if mode == Mode::Native {
        kubectl.run(&["delete", "bfdprofiles", "--all", "-n", NS], None)?;
    }
    Ok(())
}

/// One figure of MetalLB's modes (`(system, value)`) and of ferrolb, with each ratio
/// (MetalLB's over ferrolb's: > 1 when ferrolb does better, for figures where lower is
/// better).
fn figure(name: &str, unit: &str, metallb: &[(&str, f64)], ferrolb: f64) {
    for (system, theirs) in metallb {
        println!("BENCH versus_{name}_{system} {theirs:.1} {unit}");
    }
    println!("BENCH versus_{name}_ferrolb {ferrolb:.1} {unit}");
    for (system, theirs) in metallb {
        if ferrolb > 0.0 {
            println!(
                "BENCH versus_{name}_ratio_{system} {:.1} x",
                theirs / ferrolb
            );
        }
    }
}

/// What a BGP implementation does with the lab loaded: converge and withdraw times of the
/// probes, the speaker pod's memory, the BGP failure window, and a BGPAdvertisement change.
struct Bgp {
    system: &'static str,
    rss: f64,
    cpu: f64,
    /// Not measured with `FERROLB_VERSUS_ONLY=memory`.
    probes: Option<Probes>,
    /// Measured only when `FERROLB_VERSUS_ONLY` is not set.
    timed: Option<Timed>,
}

/// What the figures are measured of (`FERROLB_VERSUS_ONLY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Only {
    /// Every figure.
    All,
    /// Speaker memory and CPU, and the switch.
    Memory,
    /// Those, and the probes' converge and withdraw times.
    Converge,
}

/// The probes' times (ms): created to routed, deleted to withdrawn.
struct Probes {
    converge: Vec<f64>,
    withdraw: Vec<f64>,
}

impl Bgp {
    /// One system's runs, one a round, as one: the probes' times together, the median of
    /// each other figure, the sessions reset summed.
    fn merged(runs: Vec<Bgp>) -> Result<Bgp> {
        let system = runs.first().context("no run to merge")?.system;
        let each = |f: fn(&Bgp) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let (rss, cpu) = (each(|r| r.rss), each(|r| r.cpu));
        let probes: Option<Vec<&Probes>> = runs.iter().map(|r| r.probes.as_ref()).collect();
        let probes = probes.map(|p| Probes {
            converge: p.iter().flat_map(|p| p.converge.clone()).collect(),
            withdraw: p.iter().flat_map(|p| p.withdraw.clone()).collect(),
        });
        let timed: Option<Vec<Timed>> = runs.into_iter().map(|r| r.timed).collect();
        let timed = timed.map(|timed| {
            let changes = |c: Vec<&Change>| Change {
                ms: median(&c.iter().map(|c| c.ms).collect::<Vec<_>>()),
                resets: c.iter().map(|c| c.resets).sum(),
            };
            let peer_changes: Option<Vec<&Change>> =
                timed.iter().map(|t| t.peer_change.as_ref()).collect();
            Timed {
                failure_window: median(&timed.iter().map(|t| t.failure_window).collect::<Vec<_>>()),
                change: changes(timed.iter().map(|t| &t.change).collect()),
                peer_change: peer_changes.map(changes),
            }
        });
        Ok(Bgp {
            system,
            rss,
            cpu,
            probes,
            timed,
        })
    }
}

/// The figures of [`Bgp`] that are times (and counts) of changes and failures.
struct Timed {
    failure_window: f64,
    change: Change,
    /// The BGPPeer's BFD profile changed: not in native mode, which has no BFD.
    peer_change: Option<Change>,
}

/// A community added to the bulk pool's BGPAdvertisement and taken away again: the time
/// (ms, the mean of the two) from `kubectl patch` returning to every path of the bulk pool
/// at the ToR carrying it (then none), and the BGP sessions the ToR saw reset meanwhile.
struct Change {
    ms: f64,
    resets: u64,
}

/// The community the advertisement change adds.
const CHANGE_COMMUNITY: &str = "64512:777";

impl Bgp {
    /// `system`'s figures; `pod` tells its speaker pods' processes, `controller` its
    /// controller's.
    fn measure(
        lab: &Lab,
        system: &'static str,
        pod: impl Fn(&[String]) -> bool + Copy,
        controller: impl Fn(&[String]) -> bool + Copy,
        probes: usize,
        bfd: bool,
        only: Only,
    ) -> Result<Bgp> {
        let rss = rss_mib(lab, &format!("{system}'s speaker pod"), pod)?;
        let cpu = cpu_seconds(lab, &format!("{system}'s speaker pod"), pod)?;
        let mut bgp = Bgp {
            system,
            rss,
            cpu,
            probes: None,
            timed: None,
        };
        if only == Only::Memory {
            return Ok(bgp);
        }
        // The probes and the change first, on a system at rest: after a port flap MetalLB's
        // speakers announce every Service again, one at a time (with 10,000, for over ten
        // minutes), and a probe would wait behind them.
        bgp.probes = Some(converge(&lab.lab, system, probes, pod, controller)?);
        if only == Only::Converge {
            return Ok(bgp);
        }
        let change = advertisement_change(&lab.lab, system, lab.services)?;
        let peer_change = bfd.then(|| peer_change(&lab.lab, system)).transpose()?;
        let failure_window = lab.port_failures(&lab.routed, 3, system, "BGP node failure")?;
        bgp.timed = Some(Timed {
            failure_window,
            change,
            peer_change,
        });
        Ok(bgp)
    }
}

/// The sessions the ToR has seen established and dropped, summed over its neighbours.
fn tor_sessions(lab: &ChartLab) -> Result<(u64, u64)> {
    let neighbors = lab.tor.json("show bgp neighbors json")?;
    let mut counts = (0, 0);
    for neighbor in neighbors.as_object().into_iter().flat_map(|n| n.values()) {
        counts.0 += neighbor["connectionsEstablished"].as_u64().unwrap_or(0);
        counts.1 += neighbor["connectionsDropped"].as_u64().unwrap_or(0);
    }
    Ok(counts)
}

/// Prints, for each of the ToR's neighbours, why its session last ended and how long ago, as
/// the ToR's bgpd tells (`what` names the change that saw sessions reset).
fn last_resets(lab: &ChartLab, what: &str) -> Result<()> {
    let neighbors = lab.tor.json("show bgp neighbors json")?;
    for (address, neighbor) in neighbors.as_object().into_iter().flatten() {
        let due_to = neighbor["lastResetDueTo"].as_str().unwrap_or("never reset");
        match neighbor["lastResetTimerMsecs"].as_u64() {
            Some(ago) => println!("{what}: {address} last reset {ago} ms ago: {due_to}"),
            None => println!("{what}: {address}: {due_to}"),
        }
    }
    Ok(())
}

/// The paths of the ToR's BGP table that carry [`CHANGE_COMMUNITY`]: the lines of FRR's
/// table that show a valid path (`*`); FRR lists only the paths that match.
fn community_paths(lab: &ChartLab) -> Result<usize> {
    let text = lab.tor.vtysh(&format!(
        "show bgp ipv4 unicast community {CHANGE_COMMUNITY}"
    ))?;
    Ok(text.lines().filter(|l| l.starts_with('*')).count())
}

/// A merge patch of a spec, what it is awaited for, and the probe that tells it is there.
type Step<'a> = (String, String, Box<dyn Fn() -> Result<bool> + 'a>);

/// Two merge patches of `kind` `name`'s spec, the change and its undoing, each timed from
/// `kubectl patch` returning until its probe holds: the [`Change`], printed as `what`.
fn timed_change(
    lab: &ChartLab,
    what: &str,
    kind: &str,
    name: &str,
    steps: [Step<'_>; 2],
) -> Result<Change> {
    let kubectl = lab.cluster.kubectl();
    let before = tor_sessions(lab)?;
    let mut times = Vec::new();
    for (spec, awaited, probe) in steps {
        kubectl.run(
            &[
                "patch",
                kind,
                name,
                "-n",
                NS,
                "--type",
                "merge",
                "-p",
                &format!("{{\"spec\":{{{spec}}}}}"),
            ],
            None,
        )?;
        let patched = Instant::now();
        wait_for(&awaited, Duration::from_secs(600), || {
            Ok(probe()?.then_some(()))
        })?;
        times.push(patched.elapsed().as_secs_f64() * 1e3);
    }
    let after = tor_sessions(lab)?;
    let resets = (after.0 - before.0).max(after.1 - before.1);
    println!(
        "{what}: {:.0} ms, undone in {:.0} ms; {resets} sessions reset",
        times[0], times[1]
    );
    if resets > 0 {
        last_resets(lab, what)?;
    }
    Ok(Change {
        ms: times.iter().sum::<f64>() / times.len() as f64,
        resets,
    })
}

/// [`Change`]: the bulk BGPAdvertisement given [`CHANGE_COMMUNITY`], then without it; each
/// time from `kubectl patch` returning until every one of the `services` bulk IPs' paths
/// (one from each node) carries it, then none does.
fn advertisement_change(lab: &ChartLab, system: &str, services: usize) -> Result<Change> {
    let all_paths = services * lab.cluster.names().len();
    let step = |communities: String, want: usize| -> Step<'_> {
        (
            format!("\"communities\":{communities}"),
            format!("{want} paths with community {CHANGE_COMMUNITY} at the ToR"),
            Box::new(move || Ok(community_paths(lab)? == want)),
        )
    };
    timed_change(
        lab,
        &format!("{system} advertisement change (community {CHANGE_COMMUNITY} added)"),
        "bgpadvertisement",
        "bulk",
        [
            step(format!("[\"{CHANGE_COMMUNITY}\"]"), all_paths),
            step("null".into(), 0),
        ],
    )
}

/// The BFD profile the BGPPeer change moves the peer to, besides `fast` (100 ms).
const STEADY_PROFILE: &str = "apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: steady, namespace: metallb-system}
spec: {receiveInterval: 200, transmitInterval: 200, detectMultiplier: 3}
";

/// [`bgp_manifests`] (BFD profile `fast`) and BFD profile `steady`; MetalLB's native mode
/// refuses BFD profiles.
fn bfd_manifests() -> String {
    format!("{}---\n{STEADY_PROFILE}", bgp_manifests())
}

/// The receive intervals (ms) the nodes ask of the ToR in its BFD sessions that are up.
fn bfd_receive_intervals(lab: &ChartLab) -> Result<Vec<u64>> {
    let peers = lab.tor.json("show bfd peers json")?;
    Ok(peers
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"] == "up")
        .filter_map(|p| p["remote-receive-interval"].as_u64())
        .collect())
}

/// [`Change`] of BGPPeer `tor`: its `bfdProfile` patched to `steady` (200 ms), then back to
/// `fast` (100 ms); each time from `kubectl patch` returning until every node's BFD session
/// at the ToR is up and asks for the new receive interval.
fn peer_change(lab: &ChartLab, system: &str) -> Result<Change> {
    let nodes = lab.cluster.names().len();
    let step = |profile: &str, interval: u64| -> Step<'_> {
        (
            format!("\"bfdProfile\":\"{profile}\""),
            format!("{nodes} BFD sessions at the ToR up, the nodes asking for {interval} ms"),
            Box::new(move || {
                let intervals = bfd_receive_intervals(lab)?;
                Ok(intervals.len() == nodes && intervals.iter().all(|i| *i == interval))
            }),
        )
    };
    timed_change(
        lab,
        &format!("{system} BGPPeer change (BFD profile steady)"),
        "bgppeer",
        "tor",
        [step("steady", 200), step("fast", 100)],
    )
}

/// The lab with the IPs of its two Services.
struct Lab {
    lab: ChartLab,
    /// Where the run's files go.
    dir: std::path::PathBuf,
    routed: String,
    web: String,
    /// The Services of the bulk pool, besides the probes.
    services: usize,
    /// Times MetalLB did not settle within [`SETTLE_LIMIT`] and its speakers were restarted.
    metallb_stalls: std::cell::Cell<usize>,
}

/// How long the lab is given to settle after a fault before it counts as a stall.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

impl Lab {
    /// Waits until the ToR routes the BGP IP to every node, the client's requests to both
    /// IPs are answered, and node 2 owns the layer-2 IP. While MetalLB runs, a lab that does
    /// not settle within [`SETTLE_LIMIT`] (its layer-2 IP has been left unanswered by every
    /// node for minutes after a port flap) is counted as a stall, its speakers restarted and
    /// the wait begun again, so that the run goes on to its other figures.
    fn settled(&self, what: &str) -> Result<()> {
        let Err(error) = self.settled_within(what) else {
            return Ok(());
        };
        let kubectl = self.lab.cluster.kubectl();
        let metallb = kubectl.run(
            &[
                "get",
                "ds",
                "metallb-speaker",
                "-n",
                NS,
                "--ignore-not-found",
                "-o",
                "name",
            ],
            None,
        )?;
        if metallb.trim().is_empty() {
            return Err(error);
        }
        self.metallb_stalls.set(self.metallb_stalls.get() + 1);
        println!(
            "MetalLB did not settle within {} s ({error:#}); restarting its speakers",
            SETTLE_LIMIT.as_secs()
        );
        kubectl.run(
            &["rollout", "restart", "ds/metallb-speaker", "-n", NS],
            None,
        )?;
        kubectl.run(
            &[
                "rollout",
                "status",
                "ds/metallb-speaker",
                "-n",
                NS,
                "--timeout=300s",
            ],
            None,
        )?;
        self.settled_within(what)
    }

    fn settled_within(&self, what: &str) -> Result<()> {
        wait_for(what, SETTLE_LIMIT, || {
            Ok(self
                .lab
                .announced(&self.routed, &[&self.web])?
                .then_some(()))
        })?;
        // Node 2 answers for the layer-2 IP (the election gives it) once it is back.
        wait_for("node 2 owning the layer-2 IP", SETTLE_LIMIT, || {
            Ok((self.lab.l2_owner(&self.web)? == 1).then_some(()))
        })
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
        Ok(median(&runs))
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

/// What a controller does with a backlog: `count` Services created while it was scaled to
/// none, then it scaled back.
struct Allocation {
    /// From `kubectl scale` returning to the first Service given an IP (ms): the pod's start.
    first_ms: f64,
    /// From `kubectl scale` returning to the last Service given an IP (ms).
    all_ms: f64,
    /// The resident memory of its largest process then (MiB): the leader's.
    rss: f64,
}

impl Lab {
    /// [`Allocation`] of controller Deployment `deployment`, whose processes `is_controller`
    /// tells (found on the whole machine: its pod has a network namespace of its own). The
    /// Services are deleted again afterwards.
    fn allocation(
        &self,
        system: &str,
        deployment: &str,
        count: usize,
        is_controller: impl Fn(&[String]) -> bool + Copy,
    ) -> Result<Allocation> {
        let kubectl = self.lab.cluster.kubectl();
        let deployment = format!("deployment/{deployment}");
        let replicas = kubectl
            .run(
                &[
                    "get",
                    &deployment,
                    "-n",
                    NS,
                    "-o",
                    "jsonpath={.spec.replicas}",
                ],
                None,
            )?
            .trim()
            .to_string();
        kubectl.run(&["scale", &deployment, "-n", NS, "--replicas=0"], None)?;
        wait_for(
            &format!("{system}'s controller processes gone"),
            Duration::from_secs(120),
            || Ok(rss::each_rss_kib(is_controller)?.is_empty().then_some(())),
        )?;
        let created = Instant::now();
        for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
            let manifests: Vec<String> = chunk.iter().map(|&i| alloc_service(i)).collect();
            kubectl.run(&["create", "-f", "-"], Some(&manifests.join("---\n")))?;
        }
        println!(
            "{system}: {count} Services of the allocation pool created in {} s",
            created.elapsed().as_secs()
        );
        // A watch of them, its first list printed before the controller comes back.
        let out = self.dir.join(format!("allocation-{system}.watch"));
        let list = ["get", "services", "-n", "default", "-l", ALLOC_LABEL];
        let mut watch = kubectl.follow(
            &[
                &list[..],
                &[
                    "--watch",
                    "--no-headers",
                    "-o",
                    "custom-columns=NAME:.metadata.name,IP:.status.loadBalancer.ingress[0].ip",
                ],
            ]
            .concat(),
            &out,
        )?;
        let allocated = || -> Result<(usize, usize)> {
            let text = std::fs::read_to_string(&out)?;
            let mut seen = std::collections::HashSet::new();
            let mut given = std::collections::HashSet::new();
            for line in text.lines() {
                let mut fields = line.split_whitespace();
                let (Some(name), Some(ip)) = (fields.next(), fields.next()) else {
                    continue;
                };
                seen.insert(name.to_string());
                if ip != "<none>" {
                    given.insert(name.to_string());
                }
            }
            Ok((seen.len(), given.len()))
        };
        let result = (|| {
            wait_for(
                "the watch of the allocation pool's Services listing them",
                Duration::from_secs(300),
                || Ok((allocated()?.0 >= count).then_some(())),
            )?;
            if allocated()?.1 > 0 {
                bail!(
                    "{system}: Services of the allocation pool had IPs before the controller ran"
                );
            }
            kubectl.run(
                &[
                    "scale",
                    &deployment,
                    "-n",
                    NS,
                    &format!("--replicas={replicas}"),
                ],
                None,
            )?;
            let scaled = Instant::now();
            let mut first = None;
            let all = wait_for(
                &format!("{system}'s controller giving {count} Services an IP"),
                Duration::from_secs(3600),
                || {
                    let given = allocated()?.1;
                    if given > 0 && first.is_none() {
                        first = Some(scaled.elapsed());
                    }
                    Ok((given >= count).then(|| scaled.elapsed()))
                },
            )?;
            Ok((first.unwrap_or(all), all))
        })();
        let _ = watch.kill();
        let _ = watch.wait();
        let (first, all) = result?;
        let each = rss::each_rss_kib(is_controller)?;
        let rss = each.iter().copied().max().unwrap_or(0) as f64 / 1024.0;
        let text: Vec<String> = each
            .iter()
            .map(|k| format!("{:.1}", *k as f64 / 1024.0))
            .collect();
        println!(
            "{system}: controller scaled back, the first of {count} Services given an IP after \
             {} ms, the last after {} ms; controller processes' memory {} MiB",
            first.as_millis(),
            all.as_millis(),
            text.join(", ")
        );
        // kubectl's own wait for each of thousands of deletions takes minutes: one list
        // tells when they are all gone.
        kubectl.run(
            &[
                "delete",
                "services",
                "-n",
                "default",
                "-l",
                ALLOC_LABEL,
                "--wait=false",
            ],
            None,
        )?;
        wait_for(
            "the allocation pool's Services deleted",
            Duration::from_secs(1200),
            || {
                std::thread::sleep(Duration::from_millis(500));
                let left = kubectl.run(&[&list[..], &["-o", "name"]].concat(), None)?;
                Ok(left.trim().is_empty().then_some(()))
            },
        )?;
        Ok(Allocation {
            first_ms: first.as_secs_f64() * 1e3,
            all_ms: all.as_secs_f64() * 1e3,
            rss,
        })
    }
}

/// The pool of the allocation figure's Services: 16,384 addresses, given only to Services
/// that ask for it, and advertised by nothing, so that only the controllers work on them.
const ALLOC_POOL: &str = "10.92.0.0/18";

/// The label of the allocation figure's Services.
const ALLOC_LABEL: &str = "ferrolb.test/allocation";

/// IPAddressPool `name` of `addresses`, given only to Services that ask for it.
fn pool_on_request(name: &str, addresses: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: {name}, namespace: {NS}}}
spec:
  addresses: [{addresses}]
  autoAssign: false
"
    )
}

/// The allocation pool.
fn alloc_manifests() -> String {
    pool_on_request("allocation", ALLOC_POOL)
}

/// Service `alloc-<i>` of the allocation pool: no selector, so no endpoints, and nothing
/// for a speaker to announce.
fn alloc_service(i: usize) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: alloc-{i}
  namespace: default
  labels: {{{ALLOC_LABEL}: \"yes\"}}
  annotations: {{metallb.io/address-pool: allocation}}
spec:
  type: LoadBalancer
  ports: [{{port: 80, targetPort: 8080}}]
"
    )
}

/// The pool of the Services that load the systems and of the probes: 16,384 addresses,
/// announced over BGP, given only to Services that ask for it.
const BULK_POOL: &str = "10.93.0.0/18";

/// The bulk pool and its advertisement.
fn bulk_manifests() -> String {
    format!(
        "{}---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: bulk, namespace: {NS}}}
spec:
  ipAddressPools: [bulk]
",
        pool_on_request("bulk", BULK_POOL)
    )
}

/// Service `name` over the `web` pods in the bulk pool, at `ip` when given.
fn bulk_service(name: &str, ip: Option<&str>) -> serde_json::Value {
    let mut annotations = serde_json::json!({"metallb.io/address-pool": "bulk"});
    if let Some(ip) = ip {
        annotations["metallb.io/loadBalancerIPs"] = ip.into();
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080}],
        },
    })
}

/// The routes the ToR's kernel holds in the bulk pool.
fn bulk_routes(lab: &ChartLab) -> Result<usize> {
    Ok(lab
        .rtr
        .ip(&["-4", "route", "show", "root", BULK_POOL])?
        .lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .count())
}

/// Creates Services `load-0` … `load-{count - 1}` in the bulk pool (a `kubectl create` of
/// 500 at a time), and waits until the ToR routes every one.
fn load_services(lab: &ChartLab, count: usize) -> Result<()> {
    let kubectl = lab.cluster.kubectl();
    let started = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": chunk
                .iter()
                .map(|i| bulk_service(&format!("load-{i}"), None))
                .collect::<Vec<_>>(),
        });
        kubectl.run(&["create", "-f", "-"], Some(&list.to_string()))?;
    }
    println!(
        "{count} Services created in {} s",
        started.elapsed().as_secs()
    );
    wait_routes(lab, count)?;
    println!(
        "{count} Services routed by the ToR {} s after their creation began",
        started.elapsed().as_secs()
    );
    Ok(())
}

/// Waits (an hour at most) until the ToR routes `count` addresses of the bulk pool, looking
/// once a second (a listing of 10,000 routes is not free on the lab's two cores). Every
/// minute it prints how many are routed, and stops with an error when a container in
/// `metallb-system` is held in a crash loop (MetalLB's FRR-K8s mode with 10,000 Services
/// here: frr-k8s's FRR killed by its liveness probe, routes at the ToR falling), rather than
/// waiting out the hour.
fn wait_routes(lab: &ChartLab, count: usize) -> Result<()> {
    let kubectl = lab.cluster.kubectl();
    let started = Instant::now();
    let mut looked = Instant::now();
    // A crash loop ends the wait as its outcome (`wait_for` retries a probe's errors).
    let outcome: Result<()> = wait_for(
        &format!("the ToR routing {count} Services of the bulk pool"),
        Duration::from_secs(3600),
        || {
            let routes = bulk_routes(lab)?;
            if routes >= count {
                return Ok(Some(Ok(())));
            }
            if looked.elapsed() >= Duration::from_secs(60) {
                looked = Instant::now();
                println!(
                    "{routes} of {count} routed by the ToR after {} s",
                    started.elapsed().as_secs()
                );
                let looping = crash_looping(&kubectl.get(&["pods", "-n", NS])?);
                if !looping.is_empty() {
                    return Ok(Some(Err(anyhow::anyhow!(
                        "{routes} of {count} Services routed by the ToR after {} s, and in a \
                         crash loop: {}",
                        started.elapsed().as_secs(),
                        looping.join("; ")
                    ))));
                }
            }
            std::thread::sleep(Duration::from_secs(1));
            Ok(None)
        },
    )?;
    outcome
}

/// The times (ms) from the create of a Service leaving the client to the ToR's kernel routing
/// its IP (the first node's announcement), and from its delete leaving the client to the
/// route leaving the kernel (the last node's withdrawal), for `probes` Services created and
/// deleted one at a time, each with its IP pinned (`metallb.io/loadBalancerIPs`, the top of
/// the bulk pool). The requests go from this process ([`api_call`]), not from a kubectl
/// process: `kubectl delete` returns only once it has seen the object gone, by which time a
/// fast speaker may have withdrawn the route already, and a kubectl's own start would weigh
/// on both times.
fn converge(
    lab: &ChartLab,
    system: &str,
    probes: usize,
    pod: impl Fn(&[String]) -> bool + Copy,
    controller: impl Fn(&[String]) -> bool + Copy,
) -> Result<Probes> {
    let mut monitor = RouteMonitor::start(lab.rtr.name())?;
    monitor.timeout = Duration::from_secs(600);
    let (mut announce, mut withdraw, mut answers) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..probes {
        let name = format!("probe-{i}");
        let ip = format!("10.93.63.{}", 200 + i);
        at_rest(lab, system, pod, controller)?;
        monitor.drain();
        let created = api_call(lab, Call::Create(name.clone(), ip.clone()))?;
        answers.push(created.answer_ms());
        let took = match monitor.wait_routed(&ip) {
            Ok(routed) => routed.saturating_duration_since(created.sent),
            // Counted as the time waited: a lower bound, said as such.
            Err(error) => {
                println!(
                    "{system}: {ip} not in the ToR's FIB within {} s ({error:#}); counted as {} s",
                    monitor.timeout.as_secs(),
                    monitor.timeout.as_secs()
                );
                monitor.timeout
            }
        };
        announce.push(took.as_secs_f64() * 1e3);
        // Every node's next hop in, and quiet, before the delete.
        wait_for(
            &format!("{ip} routed to every node"),
            Duration::from_secs(1800),
            || Ok((lab::nexthops(&lab.rtr, &ip)?.len() == lab.cluster.names().len()).then_some(())),
        )?;
        std::thread::sleep(Duration::from_millis(300));
        monitor.drain();
        let deleted = api_call(lab, Call::Delete(name))?;
        answers.push(deleted.answer_ms());
        let gone = monitor.wait_unrouted(&lab.rtr, &ip)?;
        withdraw.push(gone.saturating_duration_since(deleted.sent).as_secs_f64() * 1e3);
    }
    let text = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("{system} converge (ms): {}", text(&announce));
    println!("{system} withdraw (ms): {}", text(&withdraw));
    println!(
        "{system} the API server's answers to those creates and deletes (ms): {}",
        text(&answers)
    );
    Ok(Probes {
        converge: announce,
        withdraw,
    })
}

/// A probe's request to the API server.
enum Call {
    /// Create Service `name` (first) in the bulk pool with IP `ip` (second) pinned.
    Create(String, String),
    /// Delete Service `name`.
    Delete(String),
}

/// When a request left the client, and when the API server's answer came back.
struct Sent {
    sent: Instant,
    answered: Instant,
}

impl Sent {
    fn answer_ms(&self) -> f64 {
        self.answered
            .saturating_duration_since(self.sent)
            .as_secs_f64()
            * 1e3
    }
}

/// Sends `call` to the lab's API server from a thread that has entered the control plane's
/// namespace (where the API server's address is), with a client of its own whose connection
/// is open (a read of Service `kubernetes`) before the request is timed.
fn api_call(lab: &ChartLab, call: Call) -> Result<Sent> {
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{Api, DeleteParams, PostParams};

    let netns = lab.cluster.control_plane().name();
    api::with_client(netns, lab.cluster.kubeconfig(), |client| async move {
        let services: Api<Service> = Api::namespaced(client, "default");
        services
            .get("kubernetes")
            .await
            .context("reading Service default/kubernetes")?;
        let sent = Instant::now();
        match call {
            Call::Create(name, ip) => {
                let service: Service = serde_json::from_value(bulk_service(&name, Some(&ip)))?;
                services
                    .create(&PostParams::default(), &service)
                    .await
                    .with_context(|| format!("creating Service default/{name}"))?;
            }
            Call::Delete(name) => {
                services
                    .delete(&name, &DeleteParams::default())
                    .await
                    .with_context(|| format!("deleting Service default/{name}"))?;
            }
        }
        Ok(Sent {
            sent,
            answered: Instant::now(),
        })
    })
}

/// The CPU use below which a system counts as at rest: 5 % of one core (keepalives, BFD and
/// gossip use far less; a controller writing Services' statuses, or a speaker going over
/// them, far more).
const REST_CPU: f64 = 0.05;
/// How long CPU use is sampled to tell.
const REST_SAMPLE: Duration = Duration::from_secs(3);

/// Waits until `system`'s speaker pods (`pod`, in the nodes' namespaces) and controller
/// (`controller`, anywhere: it runs in a pod's own namespace) use less than [`REST_CPU`]
/// together over [`REST_SAMPLE`], for at most 30 minutes; a wait of more than two samples
/// is printed.
fn at_rest(
    lab: &ChartLab,
    system: &str,
    pod: impl Fn(&[String]) -> bool + Copy,
    controller: impl Fn(&[String]) -> bool + Copy,
) -> Result<()> {
    // CPU seconds and processes counted.
    let sample = || -> Result<(f64, usize)> {
        let mut total = rss::cpu_seconds(None, controller)?;
        for node in lab.cluster.node_namespaces() {
            let (seconds, count) = rss::cpu_seconds(Some(node), pod)?;
            total = (total.0 + seconds, total.1 + count);
        }
        Ok(total)
    };
    let started = Instant::now();
    let mut before = sample()?;
    loop {
        std::thread::sleep(REST_SAMPLE);
        let now = sample()?;
        let used = now.0 - before.0;
        // The same processes (none restarted meanwhile), and quiet.
        if now.1 == before.1 && (0.0..REST_CPU * REST_SAMPLE.as_secs_f64()).contains(&used) {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!(
                "{system} not at rest after 30 minutes ({used:.2} CPU s in the last {} s)",
                REST_SAMPLE.as_secs()
            );
        }
        before = now;
    }
    let waited = started.elapsed();
    if waited > REST_SAMPLE * 2 {
        println!("{system}: at rest after {:.0} s", waited.as_secs_f64());
    }
    Ok(())
}

/// The largest, over the nodes, of the summed resident memory (MiB) of the processes
/// `matches` accepts, with the per-node figures printed.
fn rss_mib(lab: &Lab, what: &str, matches: impl Fn(&[String]) -> bool + Copy) -> Result<f64> {
    largest_per_node(lab, what, "MiB", |node| {
        let (kib, processes) = rss::rss_kib(node, matches)?;
        Ok((kib as f64 / 1024.0, processes))
    })
}

/// The largest, over the nodes, of the summed CPU seconds of the processes `matches`
/// accepts, with the per-node figures printed.
fn cpu_seconds(lab: &Lab, what: &str, matches: impl Fn(&[String]) -> bool + Copy) -> Result<f64> {
    largest_per_node(lab, &format!("{what} (CPU)"), "s", |node| {
        rss::cpu_seconds(Some(node), matches)
    })
}

/// The largest over the nodes of `read` (a figure and the number of processes it sums),
/// printed per node in `unit`; no process on a node is an error.
fn largest_per_node(
    lab: &Lab,
    what: &str,
    unit: &str,
    read: impl Fn(&Netns) -> Result<(f64, usize)>,
) -> Result<f64> {
    let mut largest: f64 = 0.0;
    let mut text = Vec::new();
    for node in lab.lab.cluster.node_namespaces() {
        let (value, processes) = read(node)?;
        if processes == 0 {
            bail!("no process of {what} found on {}", node.name());
        }
        text.push(format!("{}: {value:.1} {unit} in {processes}", node.name()));
        largest = largest.max(value);
    }
    println!("{what}: {}", text.join(", "));
    Ok(largest)
}

fn main() -> Result<()> {
    if !lab::bench_selected(&["versus"]) {
        return Ok(());
    }
    let started = Instant::now();
    let services: usize = paths::env_parsed("FERROLB_VERSUS_SERVICES").unwrap_or(1000);
    let probes: usize = paths::env_parsed("FERROLB_VERSUS_PROBES").unwrap_or(20);
    let backlog: usize = paths::env_parsed("FERROLB_VERSUS_ALLOCATE").unwrap_or(10_000);
    let only = match std::env::var("FERROLB_VERSUS_ONLY").as_deref() {
        Ok("memory") => Only::Memory,
        Ok("converge") => Only::Converge,
        Ok(other) => {
            bail!("FERROLB_VERSUS_ONLY={other:?}: \"memory\" and \"converge\" are known")
        }
        Err(_) => Only::All,
    };
    let order: Vec<Mode> = std::env::var("FERROLB_VERSUS_MODES")
        .unwrap_or_else(|_| "native,frrk8s,frr".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_>>()?;
    if order.is_empty() {
        bail!("FERROLB_VERSUS_MODES: no MetalLB mode");
    }
    let rounds: usize = paths::env_parsed("FERROLB_VERSUS_ROUNDS").unwrap_or(1);
    if rounds == 0 {
        bail!("FERROLB_VERSUS_ROUNDS=0: at least one round");
    }
    let scratch = Scratch::new("versus")?;
    let built = metallb::built()?;
    let version = metallb::version(&built)?;
    let prefix = format!("flvs{}", std::process::id());
    let chart_lab = metallb::lab(&prefix, scratch.path(), &built)?;
    let kubectl = chart_lab.cluster.kubectl();
    metallb::install(&chart_lab, &built, order[0])?;
    let peer = peer_manifests(order[0]);
    let manifests = format!(
        "{}---\n{peer}---\n{}---\n{}",
        l2_manifests(),
        survivor_manifests(&chart_lab.cluster)?,
        bulk_manifests() + "---\n" + &alloc_manifests()
    );
    metallb::apply_when_admitted(kubectl, &manifests)?;
    let lab = Lab {
        dir: scratch.path().to_path_buf(),
        routed: service_ip(&chart_lab.cluster, "survivor-bgp")?,
        web: service_ip(&chart_lab.cluster, "survivor-l2")?,
        lab: chart_lab,
        services,
        metallb_stalls: std::cell::Cell::new(0),
    };
    let kubectl = lab.lab.cluster.kubectl();
    lab.settled(&format!("MetalLB {version} announcing"))?;
    load_services(&lab.lab, services)?;

    // The speaker pod's processes: the speaker, and FRR's daemons and frr-k8s's where the
    // mode runs them; not frr-k8s's webhook server (`/statuscleaner`, one pod of a Deployment
    // in the host network namespace of one node).
    let metallb_pod = |argv: &[String]| {
        argv[0] == "/speaker" || argv[0] == "/frr-k8s" || rss::is_frr_daemon(argv)
    };
    let metallb_controller = |argv: &[String]| argv[0] == "/controller";
    let is_speaker = |argv: &[String]| {
        argv[0].ends_with("ferrolb") && argv.get(1).is_some_and(|a| a == "speaker")
    };
    let is_controller = |argv: &[String]| {
        argv[0].ends_with("ferrolb") && argv.get(1).is_some_and(|a| a == "controller")
    };
    let (how, back) = match std::env::var("FERROLB_VERSUS_SWITCH").as_deref() {
        Ok("remove-first") => (metallb::Switch::RemoveFirst, metallb::Back::Uninstall),
        _ => (metallb::Switch::NodeByNode, metallb::Back::NodeByNode),
    };
    // Every mode's measures and ferrolb's, round after round, and the switches.
    let (mut runs, mut ours, mut switches) = (Vec::new(), Vec::new(), Vec::new());
    let mut first = None;
    for round in 0..rounds {
        if round > 0 {
            println!("round {}: back to MetalLB's {:?} mode", round + 1, order[0]);
            let back = metallb::roll_back(
                &lab.lab,
                &built,
                order[0],
                back,
                || prepare_mode(kubectl, order[0]),
                &lab.routed,
                &lab.web,
            )?;
            report("roll-back", &back);
        }
        for (i, &mode) in order.iter().enumerate() {
            if i > 0 {
                metallb::change_mode(&lab.lab, &built, mode)?;
                metallb::apply_when_admitted(kubectl, &bfd_manifests())?;
            }
            wait_routes(&lab.lab, services)?;
            lab.settled(&format!("MetalLB {version} in {mode:?} mode"))?;
            println!(
                "MetalLB {version}: {mode:?} mode, {}, {services} Services more",
                if mode == Mode::Native {
                    "hold time 3 s"
                } else {
                    "BFD 100 ms × 3 and graceful restart"
                }
            );
            runs.push(Bgp::measure(
                &lab,
                mode.name(),
                metallb_pod,
                metallb_controller,
                probes,
                mode != Mode::Native,
                only,
            )?);
            if round == 0 && i == 0 && only == Only::All {
                // Layer 2 is memberlist's in every mode; a restart is measured once, and the
                // controller (the same in every mode) once.
                let l2 = lab.port_failures(&lab.web, 5, "metallb_l2", "layer-2 owner failure")?;
                let (failed, restart) = lab.restart("metallb-speaker", mode.name())?;
                let allocation =
                    lab.allocation("metallb", "metallb-controller", backlog, metallb_controller)?;
                first = Some((mode, l2, failed, restart, allocation));
            }
        }
        println!(
            "switch from MetalLB's {:?} mode: {how:?}",
            order[order.len() - 1]
        );
        let switched = metallb::switch_to_ferrolb(&lab.lab, &built, how, &lab.routed, &lab.web)?;
        report("switch", &switched);
        switches.push(switched);

        // ferrolb with BFD and graceful restart (from native mode, the peer had neither).
        kubectl.apply(&bfd_manifests())?;
        wait_routes(&lab.lab, services)?;
        lab.lab
            .wait_settled("ferrolb with BFD", &lab.routed, &[&lab.web])?;
        lab.settled("ferrolb announcing")?;
        let speaker_rss = rss_mib(&lab, "ferrolb's speaker", is_speaker)?;
        let frr_rss = rss_mib(&lab, "FRR in ferrolb's speaker pod", rss::is_frr_daemon)?;
        println!("ferrolb: speaker {speaker_rss:.1} MiB, FRR {frr_rss:.1} MiB at most per node");
        ours.push(Bgp::measure(
            &lab,
            "ferrolb",
            |argv| is_speaker(argv) || rss::is_frr_daemon(argv),
            is_controller,
            probes,
            true,
            only,
        )?);
    }
    let services_ips = metallb::service_ips(kubectl)?.len();
    let sum = |f: fn(&metallb::Switched) -> usize| switches.iter().map(f).sum::<usize>();
    println!(
        "BENCH versus_switch_ip_changes_ferrolb {} services (of {services_ips}, {rounds} switches)",
        sum(|s| s.ip_changes.len())
    );
    println!(
        "BENCH versus_switch_failed_requests_ferrolb {} requests",
        sum(|s| s.bgp_requests.1 + s.l2_requests.1)
    );
    println!(
        "BENCH versus_switch_withdrawn_ferrolb {} nexthops",
        sum(|s| s.hops.withdrawn)
    );
    println!(
        "BENCH versus_switch_announced_ms_ferrolb {:.0} ms",
        median(
            &switches
                .iter()
                .map(|s| s.total.as_secs_f64() * 1e3)
                .collect::<Vec<_>>()
        )
    );
    let modes: Vec<Bgp> = order
        .iter()
        .map(|mode| Bgp::merged(runs.extract_if(.., |r| r.system == mode.name()).collect()))
        .collect::<Result<_>>()?;
    let ferrolb = Bgp::merged(ours)?;
    println!("versus: {services} Services announced besides the probes");
    // The figures that depend on the load carry it: `converge_p50_1k`, `speaker_rss_10k`.
    let scale = |count: usize| {
        if count.is_multiple_of(1000) {
            format!("{}k", count / 1000)
        } else {
            count.to_string()
        }
    };
    let at = |name: &str| format!("{name}_{}", scale(services));
    let of = |f: fn(&Bgp) -> f64| -> Vec<(&str, f64)> {
        modes.iter().map(|m| (m.system, f(m))).collect()
    };
    figure(&at("speaker_rss"), "MiB", &of(|m| m.rss), ferrolb.rss);
    figure(&at("speaker_cpu"), "s", &of(|m| m.cpu), ferrolb.cpu);
    let stalls = || {
        println!(
            "BENCH versus_stalls_metallb {} restarts",
            lab.metallb_stalls.get()
        );
        println!("versus: {} s in all", started.elapsed().as_secs());
    };
    // Every mode measured here has its probes (only `Only::Memory` leaves them out).
    if let Some(ours) = &ferrolb.probes {
        let probed: Vec<(&str, &Probes)> = modes
            .iter()
            .filter_map(|m| Some((m.system, m.probes.as_ref()?)))
            .collect();
        let of = |f: &dyn Fn(&Probes) -> f64| -> Vec<(&str, f64)> {
            probed.iter().map(|(system, p)| (*system, f(p))).collect()
        };
        let p50 = |v: &[f64]| percentile(v, 50.0);
        let p99 = |v: &[f64]| percentile(v, 99.0);
        figure(
            &at("converge_p50"),
            "ms",
            &of(&|p| p50(&p.converge)),
            p50(&ours.converge),
        );
        figure(
            &at("converge_p99"),
            "ms",
            &of(&|p| p99(&p.converge)),
            p99(&ours.converge),
        );
        figure(
            &at("withdraw_p50"),
            "ms",
            &of(&|p| p50(&p.withdraw)),
            p50(&ours.withdraw),
        );
    }
    let (Some(first), Some(ours)) = (first, ferrolb.timed) else {
        stalls();
        return Ok(());
    };
    let (first_mode, metallb_l2, metallb_restart_failed, metallb_restart, metallb_allocation) =
        first;
    let ferrolb_l2 = lab.port_failures(&lab.web, 5, "ferrolb", "layer-2 owner failure")?;
    let (ferrolb_restart_failed, ferrolb_restart) = lab.restart("speaker", "ferrolb")?;
    let ferrolb_allocation = lab.allocation("ferrolb", "controller", backlog, is_controller)?;

    // Every mode measured here has its timed figures (only with `Only::All`).
    let timed: Vec<(&str, &Timed)> = modes
        .iter()
        .filter_map(|m| Some((m.system, m.timed.as_ref()?)))
        .collect();
    let of = |f: fn(&Timed) -> f64| -> Vec<(&str, f64)> {
        timed.iter().map(|(system, t)| (*system, f(t))).collect()
    };
    figure(
        "bgp_failure_window",
        "ms",
        &of(|m| m.failure_window),
        ours.failure_window,
    );
    figure(
        &at("advertisement_change"),
        "ms",
        &of(|m| m.change.ms),
        ours.change.ms,
    );
    figure(
        "advertisement_change_resets",
        "sessions",
        &of(|m| m.change.resets as f64),
        ours.change.resets as f64,
    );
    let peer_changed: Vec<(&str, &Change)> = timed
        .iter()
        .filter_map(|(system, t)| Some((*system, t.peer_change.as_ref()?)))
        .collect();
    let our_peer_change = ours
        .peer_change
        .as_ref()
        .context("ferrolb's BGPPeer change")?;
    figure(
        "peer_change",
        "ms",
        &peer_changed
            .iter()
            .map(|(s, c)| (*s, c.ms))
            .collect::<Vec<_>>(),
        our_peer_change.ms,
    );
    figure(
        "peer_change_resets",
        "sessions",
        &peer_changed
            .iter()
            .map(|(s, c)| (*s, c.resets as f64))
            .collect::<Vec<_>>(),
        our_peer_change.resets as f64,
    );
    // The figures measured once for MetalLB: memberlist's layer 2, its controller (the same
    // in every mode, so `metallb`'s), and the first mode's speaker restart.
    let backlog = scale(backlog);
    let restarted = first_mode.name();
    for (name, unit, system, theirs, ours) in [
        (
            "l2_window".into(),
            "ms",
            "metallb_l2",
            metallb_l2,
            ferrolb_l2,
        ),
        (
            format!("allocate_{backlog}"),
            "ms",
            "metallb",
            metallb_allocation.all_ms,
            ferrolb_allocation.all_ms,
        ),
        (
            format!("allocate_first_{backlog}"),
            "ms",
            "metallb",
            metallb_allocation.first_ms,
            ferrolb_allocation.first_ms,
        ),
        (
            format!("controller_rss_{backlog}"),
            "MiB",
            "metallb",
            metallb_allocation.rss,
            ferrolb_allocation.rss,
        ),
        (
            "speaker_restart_withdrawn".into(),
            "nexthops",
            restarted,
            metallb_restart.withdrawn as f64,
            ferrolb_restart.withdrawn as f64,
        ),
        (
            "speaker_restart_failed_requests".into(),
            "requests",
            restarted,
            metallb_restart_failed as f64,
            ferrolb_restart_failed as f64,
        ),
    ] {
        let name: String = name;
        figure(&name, unit, &[(system, theirs)], ours);
    }
    stalls();
    Ok(())
}
