//! The chaos campaign (`hack/chaos.sh`): the lab ([`crate::lab`], nodes as processes, two
//! controller replicas) through storms of overlapping faults ([`faults`]) and changes
//! ([`workload`]), each followed by a quiet period, with ferrolb's promises checked all
//! along:
//!
//! - no IP held by two Services that may not share it, and none outside the pools once the
//!   pools have been still (and the controller up) for 15 s — every 2 s ([`watch`]);
//! - no next hop taken from the ToR for an IP whose node, endpoints and sessions stayed
//!   healthy: every withdrawal the ToR's FIB shows (polled every 200 ms) must be excused by
//!   a fault of the node's FRR or sessions, or a change to the Service (deleted, endpoints
//!   moved, its pool range removed);
//! - after each storm, within a quiet period of 10 s plus 20 s at most, the ToR's FIB and
//!   the MACs answering the client's ARP and NDP equal what `ferrolb render announcements`
//!   makes of the cluster's objects, and the controller has settled every IP; within 10 s
//!   plus 40 s the iBGP router's and BIRD's FIBs too (BIRD waits up to 30 s after repeated
//!   session errors before it takes a session back) ([`verify`]);
//! - no process of ferrolb or the control plane exits unless a fault killed it.
//!
//! The draw is seeded: a campaign that found a violation runs again the same way (the
//! timings of a real cluster aside) with the seed it prints.

pub mod faults;
pub mod nodes;
pub mod verify;
pub mod watch;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::lab;

/// A small seeded generator (SplitMix64): the same seed draws the same campaign.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low) + 1)
    }
}

/// What an excuse covers: a node's routes, or the routes to some IPs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every route through the node.
    Node(String),
    /// The routes to these IPs.
    Ips(Vec<String>),
    /// The routes to IPs in this pool range.
    Range(String),
}

#[derive(Debug)]
struct Excuse {
    scope: Scope,
    from: Instant,
    until: Option<Instant>,
}

/// A next hop the ToR lost.
#[derive(Debug, Clone)]
pub struct Withdrawal {
    /// When the FIB showed it gone.
    pub at: Instant,
    /// The prefix.
    pub prefix: String,
    /// The node it no longer went through.
    pub node: String,
}

/// A promise broken.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Seconds into the campaign.
    pub at: f64,
    /// What was seen.
    pub what: String,
}

/// How long after its fault ends a node's excuse still holds (BGP and BFD settling).
const LINGER: Duration = Duration::from_secs(15);

/// What the campaign's threads share.
#[derive(Debug)]
pub struct Shared {
    start: Instant,
    excuses: Vec<Excuse>,
    /// Next hops the ToR lost, not judged yet.
    pub withdrawals: Vec<Withdrawal>,
    violations: Vec<Violation>,
    seen: BTreeSet<String>,
    /// The pools as last applied: name to address ranges.
    pub pools: BTreeMap<String, Vec<String>>,
    /// When the pools, the configuration's validity or the controller's reach last changed.
    pub config_event: Instant,
}

impl Shared {
    fn new(start: Instant, pools: BTreeMap<String, Vec<String>>) -> Shared {
        Shared {
            start,
            excuses: Vec::new(),
            withdrawals: Vec::new(),
            violations: Vec::new(),
            seen: BTreeSet::new(),
            pools,
            config_event: start,
        }
    }

    /// Excuses withdrawals in `scope` from now until [`Shared::excuse_close`] (or the end of
    /// the next quiet period); returns its handle.
    pub fn excuse_open(&mut self, scope: Scope) -> usize {
        self.excuses.push(Excuse {
            scope,
            from: Instant::now(),
            until: None,
        });
        self.excuses.len() - 1
    }

    /// Ends excuse `id` at `now` (it lingers [`LINGER`] more).
    pub fn excuse_close(&mut self, id: usize, now: Instant) {
        if let Some(excuse) = self.excuses.get_mut(id) {
            excuse.until = Some(now + LINGER);
        }
    }

    /// The BGP pool's ranges changed: the controller gets its grace again.
    pub fn pools_changed(&mut self, now: Instant, with_b: bool) {
        for (name, ranges) in workload::pools(with_b) {
            self.pools.insert(
                name.to_string(),
                ranges.iter().map(|r| r.to_string()).collect(),
            );
        }
        self.config_event = now;
    }

    /// Records a violation once per `key`, and prints it.
    pub fn violate(&mut self, key: &str, what: String) {
        if !self.seen.insert(key.to_string()) {
            return;
        }
        let at = self.start.elapsed().as_secs_f64();
        println!("[{at:7.1}s] VIOLATION: {what}");
        self.violations.push(Violation { at, what });
    }

    fn excused(&self, w: &Withdrawal) -> bool {
        let ip: Option<std::net::IpAddr> = w.prefix.parse().ok();
        self.excuses.iter().any(|e| {
            let covers = match &e.scope {
                Scope::Node(node) => *node == w.node,
                Scope::Ips(ips) => ips.contains(&w.prefix),
                Scope::Range(range) => ip.is_some_and(|ip| watch::in_range(range, ip)),
            };
            let after = w.at + Duration::from_secs(1) >= e.from;
            let before = e.until.is_none_or(|until| w.at <= until);
            covers && after && before
        })
    }

    /// Judges every withdrawal recorded so far, then ends the open excuses (at a quiet
    /// period's end, when nothing is changing).
    fn judge(&mut self) {
        let withdrawals = std::mem::take(&mut self.withdrawals);
        for w in &withdrawals {
            if !self.excused(w) {
                let at = w.at.duration_since(self.start).as_secs_f64();
                self.violate(
                    &format!("withdrawn {} {} {at:.1}", w.prefix, w.node),
                    format!(
                        "the ToR lost next hop {} for {} at {at:.1} s, with no fault of that node's FRR or sessions and no change to the Service",
                        w.node, w.prefix
                    ),
                );
            }
        }
        let now = Instant::now();
        for e in &mut self.excuses {
            e.until.get_or_insert(now);
        }
        self.excuses
            .retain(|e| e.until.is_none_or(|until| until + LINGER > now));
    }
}

/// How a campaign runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Its length (storms and quiet periods; the lab's start comes on top).
    pub minutes: f64,
    /// The seed of its draws.
    pub seed: u64,
    /// The lab's directory.
    pub dir: PathBuf,
    /// No fault nor change for this long before the cluster is compared.
    pub quiet: Duration,
    /// How much longer than `quiet` the ToR, the client and the allocations may take to
    /// agree.
    pub limit: Duration,
    /// How much longer than `quiet` every router may take (BIRD waits up to 30 s after
    /// repeated session errors before it takes a session back).
    pub limit_all: Duration,
}

impl Options {
    /// `minutes` with seed `seed` in `dir`, a quiet period of 10 s and limits of 20 s (the
    /// ToR, the client, the allocations) and 40 s (every router).
    pub fn new(minutes: f64, seed: u64, dir: PathBuf) -> Options {
        Options {
            minutes,
            seed,
            dir,
            quiet: Duration::from_secs(10),
            limit: Duration::from_secs(20),
            limit_all: Duration::from_secs(40),
        }
    }
}

/// What a campaign did and found.
#[derive(Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Storms run (each followed by a quiet period).
    pub storms: u32,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u32>,
    /// Changes made.
    pub changes: u32,
    /// Changes the API server refused or timed out (during control-plane faults).
    pub refused: u32,
    /// Violations, in order.
    pub violations: Vec<Violation>,
    /// The longest time from a storm's end until the ToR's FIB, the client's ARP/NDP
    /// answers and the allocations agreed with the cluster's objects.
    pub reconverge_max: Duration,
    /// The same for every router compared (the iBGP router and BIRD too).
    pub reconverge_all_max: Duration,
    /// Every storm's time to agree, in order.
    pub reconverge: Vec<Duration>,
}

impl Report {
    /// The summary printed at the end.
    pub fn summary(&self, minutes: f64) -> String {
        let injected: u32 = self.faults.values().sum();
        let mut out = format!(
            "chaos: seed {}, {} storms, {injected} faults injected, {} changes ({} refused while the control plane was down)\n",
            self.seed, self.storms, self.changes, self.refused
        );
        for (kind, count) in &self.faults {
            out.push_str(&format!("  {count:4}  {kind}\n"));
        }
        let mut times: Vec<Duration> = self.reconverge.clone();
        times.sort();
        let p50 = times.get(times.len() / 2).copied().unwrap_or_default();
        out.push_str(&format!(
            "reconvergence after a storm (ToR, client, allocations): median {:.1} s, longest {:.1} s; every router: longest {:.1} s (polls about 1.5 s apart)\n",
            p50.as_secs_f64(),
            self.reconverge_max.as_secs_f64(),
            self.reconverge_all_max.as_secs_f64()
        ));
        out.push_str(&violations_text(
            &self.violations,
            &format!("hack/chaos.sh --seed {} --minutes {minutes}", self.seed),
        ));
        out
    }
}

impl Report {
    /// The benchmark lines: `chaos_violations`, `chaos_reconverge_max_ms`,
    /// `chaos_reconverge_all_max_ms`.
    pub fn bench_lines(&self) -> String {
        format!(
            "BENCH chaos_violations {} count\nBENCH chaos_reconverge_max_ms {} ms\nBENCH chaos_reconverge_all_max_ms {} ms\n",
            self.violations.len(),
            self.reconverge_max.as_millis(),
            self.reconverge_all_max.as_millis()
        )
    }
}

/// The violations' lines of a summary, ending with `replay` when there are any.
pub(crate) fn violations_text(violations: &[Violation], replay: &str) -> String {
    if violations.is_empty() {
        return "violations: none\n".to_string();
    }
    let mut out = format!("violations: {}\n", violations.len());
    for v in violations {
        out.push_str(&format!("  at {:.1} s: {}\n", v.at, v.what));
    }
    out.push_str(&format!("replay: {replay}\n"));
    out
}

fn say(start: Instant, text: &str) {
    println!("[{:7.1}s] {text}", start.elapsed().as_secs_f64());
}

/// A storm whose ToR, client and allocations take longer than this to agree keeps the
/// processes' logs and the routers' state (`chaos_reconverge_max_ms`'s goal).
const SLOW_STORM: Duration = Duration::from_secs(5);

/// At most this many faults at once.
const MAX_FAULTS: usize = 3;
/// The processes that must never end unless a fault ended them.
const ROLES: [&str; 6] = [
    "speaker-n1",
    "speaker-n2",
    "controller",
    "controller-1",
    "kube-apiserver",
    "etcd",
];

/// Runs a campaign on a lab it brings up in `options.dir` (refusing while a lab is up) and
/// takes down at the end.
pub fn run(options: &Options) -> Result<Report> {
    let dir = options.dir.clone();
    let (up, _) = lab::Up::start(&dir)?;
    lab::add_controller(&dir)?;
    let mut held = Some(workload::Workload::start(&dir)?);
    let listed = lab::kubectl(&dir).get(&["ipaddresspools", "-n", "metallb-system"])?;
    let pools: BTreeMap<String, Vec<String>> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let ranges = p["spec"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                ranges,
            )
        })
        .collect();
    let gateways = watch::gateways()?;
    let mut macs = BTreeMap::new();
    for (node, _) in lab::NODES {
        macs.insert(lab::node_mac(node)?, node.to_string());
    }
    let start = Instant::now();
    let shared = Arc::new(Mutex::new(Shared::new(start, pools)));
    let snapshot = |shared: &Arc<Mutex<Shared>>| shared.lock().expect("shared").pools.clone();
    // The lab as it starts must agree before anything is broken.
    if let verify::Settled::Not(diffs) = verify::settle(
        &dir,
        &snapshot(&shared),
        &gateways,
        &macs,
        Instant::now(),
        Duration::ZERO,
        (Duration::from_secs(60), Duration::from_secs(60)),
    ) {
        anyhow::bail!(
            "the lab does not agree with render announcements before any fault:\n  {}",
            diffs.join("\n  ")
        );
    }
    say(start, "lab up and agreeing; the campaign begins");
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = watch::monitor(shared.clone(), gateways.clone(), stop.clone());
    let allocations = watch::allocations(
        dir.clone(),
        shared.clone(),
        Duration::from_secs(15),
        stop.clone(),
    );

    let mut rng = Rng::new(options.seed);
    let mut report = Report {
        seed: options.seed,
        ..Report::default()
    };
    let deadline = start + Duration::from_secs_f64(options.minutes * 60.0);
    let outcome = (|| -> Result<()> {
        while Instant::now() < deadline {
            report.storms += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let length = Duration::from_millis(rng.between(20_000, 40_000))
                .min(left)
                .max(Duration::from_secs(5));
            let storm_end = Instant::now() + length;
            say(
                start,
                &format!("storm {} for {:.0} s", report.storms, length.as_secs_f64()),
            );
            let marks = verify::log_marks(&dir);
            let seed = rng.next_u64();
            let worker = {
                let shared = shared.clone();
                let mut workload = held.take().context("the workload is in use")?;
                std::thread::spawn(move || {
                    let mut rng = Rng::new(seed);
                    let (mut made, mut refused) = (0, 0);
                    while Instant::now() < storm_end {
                        match workload.step(&mut rng, &shared) {
                            Ok(what) => {
                                made += 1;
                                say(start, &format!("change: {what}"));
                            }
                            Err(error) => {
                                refused += 1;
                                say(start, &format!("change refused: {error:#}"));
                            }
                        }
                        std::thread::sleep(Duration::from_millis(rng.between(400, 2_000)));
                    }
                    (workload, made, refused)
                })
            };
            let mut active: Vec<faults::Active> = Vec::new();
            let mut next_fault = Instant::now() + Duration::from_millis(rng.between(0, 3_000));
            while Instant::now() < storm_end || !active.is_empty() {
                let now = Instant::now();
                let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut active)
                    .into_iter()
                    .partition(|a| a.until <= now || now >= storm_end);
                active = keep;
                for fault in due {
                    let what = fault.describe();
                    faults::heal(&dir, fault, &shared)
                        .with_context(|| format!("healing {what}"))?;
                    say(start, &format!("healed: {what}"));
                }
                for fault in &mut active {
                    faults::tick(fault, &mut rng)?;
                }
                if now < storm_end && now >= next_fault && active.len() < MAX_FAULTS {
                    let busy: Vec<String> = active.iter().map(faults::Active::holds).collect();
                    if let Some(fault) = faults::inject(&dir, &mut rng, &busy, &shared)? {
                        say(
                            start,
                            &format!(
                                "fault: {} for {:.1} s",
                                fault.describe(),
                                fault.until.duration_since(fault.from).as_secs_f64()
                            ),
                        );
                        *report
                            .faults
                            .entry(format!("{:?}", fault.kind))
                            .or_default() += 1;
                        active.push(fault);
                    }
                    next_fault = now + Duration::from_millis(rng.between(500, 4_000));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let (back, made, refused) = worker
                .join()
                .map_err(|_| anyhow::anyhow!("the workload thread panicked"))?;
            let workload = held.insert(back);
            report.changes += made;
            report.refused += refused;
            // No invalid CR stays through a quiet period: the API server is back by now.
            process_wait("the invalid CR to be deleted", || {
                workload.clear_invalid(&shared).map(|_| ())
            })?;
            let since = Instant::now();
            say(start, "quiet");
            for role in ROLES {
                if !lab::alive(&dir, role)? {
                    shared.lock().expect("shared").violate(
                        &format!("exited {role}"),
                        format!("{role} exited, and no fault killed it"),
                    );
                }
            }
            let pools = snapshot(&shared);
            match verify::settle(
                &dir,
                &pools,
                &gateways,
                &macs,
                since,
                options.quiet,
                (options.limit, options.limit_all),
            ) {
                verify::Settled::After {
                    tor,
                    all,
                    last,
                    last_tor,
                } => {
                    let last = last
                        .map(|l| format!("; the last to settle: {l}"))
                        .unwrap_or_default();
                    let last_tor = last_tor
                        .map(|l| format!("; the ToR's last: {l}"))
                        .unwrap_or_default();
                    say(
                        start,
                        &format!(
                            "agreeing {:.1} s after the storm (every router: {:.1} s){last}{last_tor}",
                            tor.as_secs_f64(),
                            all.as_secs_f64()
                        ),
                    );
                    if tor > SLOW_STORM {
                        let kept = verify::diagnose(&dir, &format!("storm-{}", report.storms));
                        verify::keep_logs(&marks, &kept.join("logs"));
                        say(
                            start,
                            &format!(
                                "slower than {} s: the processes' logs since the storm began are in {}",
                                SLOW_STORM.as_secs(),
                                kept.display()
                            ),
                        );
                    }
                    report.reconverge_max = report.reconverge_max.max(tor);
                    report.reconverge.push(tor);
                    report.reconverge_all_max = report.reconverge_all_max.max(all);
                }
                verify::Settled::Not(diffs) => {
                    let kept = verify::diagnose(&dir, &format!("storm-{}", report.storms));
                    verify::keep_logs(&marks, &kept.join("logs"));
                    say(
                        start,
                        &format!("the routers' and nodes' state is in {}", kept.display()),
                    );
                    let mut shared = shared.lock().expect("shared");
                    for diff in diffs {
                        shared.violate(
                            &format!("storm {} {diff}", report.storms),
                            format!("at the limit after storm {}: {diff}", report.storms),
                        );
                    }
                    report.reconverge_max =
                        report.reconverge_max.max(options.quiet + options.limit);
                    report.reconverge_all_max = report
                        .reconverge_all_max
                        .max(options.quiet + options.limit_all);
                }
            }
            shared.lock().expect("shared").judge();
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = monitor.join();
    let _ = allocations.join();
    report.violations = shared.lock().expect("shared").violations.clone();
    // What was kept of slow or failed storms outlives the lab's directory.
    let diagnosis = dir.join("diagnosis");
    if diagnosis.exists() {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ferrolb-chaos".to_string());
        let kept = dir.with_file_name(format!("{name}-diagnosis"));
        let _ = std::fs::remove_dir_all(&kept);
        match std::fs::rename(&diagnosis, &kept) {
            Ok(()) => say(
                start,
                &format!("slow or failed storms' state and logs: {}", kept.display()),
            ),
            Err(error) => say(start, &format!("keeping {}: {error}", diagnosis.display())),
        }
    }
    if outcome.is_err() && std::env::var_os("FERROLB_KEEP").is_some() {
        up.keep();
    } else {
        drop(up);
    }
    outcome.map(|()| report)
}

/// Retries `work` for up to 30 s.
fn process_wait(what: &str, mut work: impl FnMut() -> Result<()>) -> Result<()> {
    crate::process::wait_for(what, Duration::from_secs(30), || Ok(work().ok()))
}
