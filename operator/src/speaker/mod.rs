//! `ferrolb speaker --node-name NAME`: announces this node's Services over BGP through FRR,
//! and answers ARP/NDP for the layer-2 IPs it is elected for ([`layer2`]).
//!
//! Flow: watches ([`cache`]) raise a change signal. Once every watch has listed, each burst
//! of changes is gathered for a few milliseconds, then one pass ([`plan`], pure) loads the
//! configuration (the last valid one stays in force when the newest is invalid), computes the
//! node's BGP intent and FRR model, and [`crate::frr::apply`] puts it into FRR: a delta in one
//! vtysh run, verified, or a reload. The log says what was announced and withdrawn, to which
//! peers, and how long it took. After every apply and every few seconds, FRR's sessions are
//! read into metrics ([`metrics`]) and the running configuration is compared with the applied
//! one, so an FRR restart or a hand edit is repaired. The `speaker-<node>` ConfigurationState
//! and one ServiceBGPStatus per announced Service ([`status`]) report the outcome. A
//! neighbour's BFD is configured once FRR reports its session up, or its peer waits for BFD
//! ([`crate::frr::bfd_hold`]); while one is held, FRR's sessions are read every
//! [`HOLD_RECHECK`]. A Local Service's new endpoints on the node are announced once
//! kube-proxy reports forwarding to them ([`proxy`]).
//!
//! Guarantees: FRR is not touched before every cache has listed once, nor while no valid
//! configuration has ever loaded; an apply that fails leaves the last verified configuration
//! in FRR and is retried with backoff, and at once when FRR answers again after it did not.

mod handover;
mod layer2;
mod leaving;
mod readback;
mod saved;

pub(crate) mod cache;
pub(crate) mod feed;
pub(crate) mod metrics;
pub(crate) mod plan;
pub(crate) mod proxy;
pub(crate) mod status;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::api::ConfigurationStateStatus;
use crate::config::LoadOptions;
use crate::frr::NodeFacts;
use crate::frr::apply::{Applier, ApplyPath, FrrTarget};
use crate::frr::bfd_hold::{self, BfdHold};
use crate::shell::runtime::{
    RETRY_MAX, RETRY_MIN, Started, now, release_free_memory, start, until_done,
};
use crate::shell::state::StateWriter;
use crate::shell::watch::Changes;
use crate::views::ServiceScope;
use cache::SpeakerCaches;
use metrics::Metrics;
use plan::{PassInputs, Planner};
use readback::{drifted, observe_sessions, poll_state, read_sessions};

/// How often FRR's sessions are read while a neighbour's BFD is held back.
pub const HOLD_RECHECK: Duration = Duration::from_millis(250);

/// The field manager of the speaker's writes.
pub const FIELD_MANAGER: &str = "ferrolb-speaker";

/// How the speaker answers for layer-2 IPs and finds the other speakers.
#[derive(Clone, Debug)]
pub struct L2Options {
    /// The gossip port.
    pub port: u16,
    /// The address others reach this speaker at; `None` for the Node's first address.
    pub advertise: Option<std::net::IpAddr>,
    /// The Secret holding the gossip key (`secretkey`).
    pub secret: String,
    /// Interfaces never answered on.
    pub exclusions: crate::l2::interfaces::Exclusions,
    /// Failure-detection timings.
    pub timings: crate::l2::members::Timings,
    /// Also gossip with ferrolb 0.1's speakers (format 2), during an upgrade from 0.1.
    pub accept_format_2: bool,
    /// How long a speaker cut off from every other speaker and the API server keeps
    /// answering ([`crate::l2::isolation`]); `None` for ever.
    pub isolated_after: Option<Duration>,
}

/// How the speaker runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Layer 2.
    pub l2: L2Options,
    /// This node's name.
    pub node_name: String,
    /// ferrolb's namespace.
    pub namespace: String,
    /// The Services handled.
    pub scope: ServiceScope,
    /// The FRR instance driven.
    pub frr: FrrTarget,
    /// Where the probes and metrics are served.
    pub listeners: crate::http::Listeners,
    /// How long a burst of changes is gathered before a pass (see `earliest_next`).
    pub coalesce: Duration,
    /// How often FRR's state is polled and its configuration checked.
    pub poll: Duration,
    /// Announce from nodes labelled for exclusion anyway.
    pub ignore_exclude_label: bool,
    /// FRR's log level (`log stdout LEVEL`).
    pub frr_log_level: String,
    /// The speaker's pod, when it runs in one: read at shutdown to tell a restart from a
    /// removal ([`leaving`]).
    pub pod_name: Option<String>,
}

/// Starts `planner` from the last valid configuration this node ran ([`saved`]), with the
/// cluster's Nodes and Namespaces from `live`: it stands until the cluster's configuration
/// loads, so a speaker restarted while that is invalid still applies what changes.
fn adopt_saved(
    planner: &mut Planner,
    live: &crate::config::ClusterObjects,
    options: &Options,
    load: &LoadOptions,
) {
    let dir = &options.frr.config_dir;
    let mut objects = match saved::read(dir, &options.namespace) {
        None => return,
        Some(Ok(objects)) => objects,
        Some(Err(error)) => {
            tracing::warn!(%error, "the last valid configuration kept for a restart cannot be read");
            return;
        }
    };
    objects.nodes = live.nodes.clone();
    objects.namespaces = live.namespaces.clone();
    match crate::config::load(&objects, load) {
        Ok(config) => {
            if planner.adopt(config) {
                tracing::info!(
                    file = %saved::path(dir).display(),
                    "read the last valid configuration this node ran; it stands until the cluster's loads"
                );
            }
        }
        Err(errors) => tracing::warn!(
            errors = %crate::shell::state::summary(&errors),
            "the last valid configuration kept for a restart no longer loads"
        ),
    }
}

/// Reads the kernel's forwarding switches, which zebra prints.
fn node_facts() -> NodeFacts {
    let on = |path: &str| {
        std::fs::read_to_string(path)
            .map(|v| v.trim() != "0")
            .unwrap_or(true)
    };
    NodeFacts {
        ipv4_forwarding: on("/proc/sys/net/ipv4/ip_forward"),
        ipv6_forwarding: on("/proc/sys/net/ipv6/conf/all/forwarding"),
    }
}

/// Runs the speaker until `shutdown` is cancelled.
pub async fn run(options: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Started {
        metrics,
        client,
        ready,
    } = start::<Metrics>(&options.listeners, &shutdown).await?;

    let asked = until_done(
        "asking the API server for discovery.k8s.io/v1",
        &shutdown,
        || cache::serves_endpoint_slices_v1(&client),
    )
    .await;
    let Some(slices_v1) = asked else {
        return Ok(());
    };
    if !slices_v1 {
        anyhow::bail!(
            "the API server does not serve discovery.k8s.io/v1 EndpointSlices: ferrolb needs Kubernetes 1.21 or newer"
        );
    }
    let changes = Arc::new(Changes::new(metrics.client.updates.clone()));
    let caches = SpeakerCaches::start(&client, &options.namespace, &changes);
    tokio::select! {
        () = caches.ready() => {}
        () = shutdown.cancelled() => return Ok(()),
    }
    ready.store(true, Ordering::Release);
    tracing::info!(node = %options.node_name, "caches synced");

    let load = LoadOptions {
        namespace: options.namespace.clone(),
    };
    let mut planner = Planner::waiting_for_proxy();
    adopt_saved(&mut planner, &caches.snapshot(), &options, &load);
    // The planner's count of loads whose objects the file holds.
    let mut saved_loads = 0;
    let (proxied, mut proxy_probes) = tokio::sync::mpsc::unbounded_channel();
    let mut applier = Applier::new(options.frr.clone());
    let mut hold = BfdHold::new();
    // Whether the last model applied had a neighbour's BFD held back.
    let mut holding = false;
    let (statuses, wanted_statuses) = tokio::sync::watch::channel(None);
    tokio::spawn(
        status::StatusWriter::<crate::api::ServiceBGPStatus>::new(
            client.clone(),
            &options.namespace,
            &options.node_name,
        )
        .run(
            wanted_statuses,
            metrics.client.update_errors.clone(),
            shutdown.clone(),
        ),
    );
    let mut layer2 = layer2::Layer2::start(&client, &options, &metrics, &shutdown);
    let (state_tx, wanted_state) = tokio::sync::watch::channel(None);
    tokio::spawn(
        StateWriter {
            client: client.clone(),
            namespace: options.namespace.clone(),
            name: format!("speaker-{}", options.node_name),
            component: "speaker",
            field_manager: FIELD_MANAGER,
        }
        .run(
            wanted_state,
            metrics.client.update_errors.clone(),
            shutdown.clone(),
        ),
    );
    // The ConfigurationState status last handed to its writer.
    let mut sent_state: Option<ConfigurationStateStatus> = None;
    let mut last_apply: Option<Result<String, String>> = None;
    let mut retry = RETRY_MIN;
    // Whether FRR answered the last read of its sessions: a failed apply is tried again as
    // soon as FRR answers after it did not (a daemon restarted), not at the end of the
    // back-off.
    let mut frr_answering = true;
    // Free memory goes back to the kernel after the first pass and then once per poll
    // period (see release_free_memory).
    let mut trim_memory = true;
    let mut poll = tokio::time::interval(options.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the last pass that changed something ended.
    let mut busy_end = Instant::now();
    loop {
        let started = Instant::now();
        // Whether this pass changes nothing: FRR, statuses and state stay as they are.
        let mut idle = true;
        let objects = caches.snapshot();
        let taken = caches.take();
        let snapshot_ms = started.elapsed().as_secs_f64() * 1e3;
        layer2.seed(&objects.nodes);
        let liveness = layer2.liveness();
        let pass = planner.pass_with(
            &objects,
            taken,
            &PassInputs {
                node: &options.node_name,
                scope: &options.scope,
                load: &load,
                facts: node_facts(),
                ignore_exclude_label: options.ignore_exclude_label,
                liveness: &liveness,
                frr_log_level: &options.frr_log_level,
            },
        );
        if pass.model.is_some() {
            layer2.announce(&pass.l2, &liveness);
        }
        start_probes(planner.take_probe_requests(), &objects, &options, &proxied);
        metrics.client.set_config(pass.model.is_some(), pass.stale);
        if let Err(errors) = &pass.load {
            // A speaker that has not loaded a valid configuration since it started has none
            // to keep: it leaves FRR as it finds it, and applies nothing until one loads.
            let then = if pass.stale {
                "the last valid configuration stays in force"
            } else {
                "no valid configuration since the speaker started: FRR keeps what it runs, and nothing is applied until the configuration is valid"
            };
            for error in errors {
                tracing::warn!(%error, "configuration error; {then}");
            }
        }
        if planner.loads() != saved_loads {
            saved_loads = planner.loads();
            if let Err(error) = saved::write(&options.frr.config_dir, &objects) {
                tracing::warn!(%error, file = %saved::path(&options.frr.config_dir).display(), "keeping the valid configuration for a restart");
            }
        }
        let plan_ms = started.elapsed().as_secs_f64() * 1e3 - snapshot_ms;
        let mut failed = false;
        // Whether the sessions read after this pass's apply let a neighbour out of the BFD
        // hold: the next pass, at once, configures its BFD.
        let mut released = false;
        if let Some(model) = &pass.model {
            let model = if bfd_hold::wants_bfd(model) {
                if let Some(sessions) = read_sessions(&mut applier).await {
                    observe_sessions(&mut hold, &sessions);
                }
                hold.gate(model)
            } else {
                Cow::Borrowed(&**model)
            };
            holding = matches!(model, Cow::Owned(_));
            let applied = applier.apply(&model).await;
            if let Some(frr) = applier.frr_version() {
                metrics.set_frr_version_known(frr.dialect.is_some());
            }
            match applied {
                Ok(report) => {
                    idle &= matches!(report.path, ApplyPath::Unchanged);
                    let ms = report.elapsed.as_secs_f64() * 1e3;
                    let how = match &report.path {
                        ApplyPath::Unchanged => None,
                        ApplyPath::Adopted => {
                            metrics.record_apply("adopted", ms);
                            Some(format!(
                                "adopted: FRR already runs the rendered configuration (checked in {ms:.1} ms)"
                            ))
                        }
                        ApplyPath::Delta(delta) => {
                            metrics.record_apply("delta", ms);
                            Some(format!(
                                "delta of {} commands ({} networks added, {} removed) through {} in {ms:.1} ms",
                                delta.commands.len(),
                                delta.networks_added,
                                delta.networks_removed,
                                if report.sockets {
                                    "the vty sockets"
                                } else {
                                    "vtysh"
                                }
                            ))
                        }
                        ApplyPath::Reload(reason) => {
                            metrics.record_apply("reload", ms);
                            tracing::info!(%reason, "reloaded FRR with frr-reload.py");
                            Some(format!("frr-reload.py in {ms:.1} ms ({reason})"))
                        }
                    };
                    for change in &pass.changes {
                        if !change.to.is_empty() {
                            tracing::info!(prefix = %change.prefix, peers = %change.to.join(", "), ms = format!("{ms:.1}"), "announce");
                        }
                        if !change.from.is_empty() {
                            tracing::info!(prefix = %change.prefix, peers = %change.from.join(", "), ms = format!("{ms:.1}"), "withdraw");
                        }
                    }
                    if let Some(how) = how {
                        tracing::info!(how = %how, "FRR configuration applied");
                        last_apply = Some(Ok(how));
                    }
                    retry = RETRY_MIN;
                }
                Err(error) => {
                    metrics.record_apply("failed", started.elapsed().as_secs_f64() * 1e3);
                    tracing::error!(error = %error, "applying FRR's configuration failed; the last verified one stays");
                    last_apply = Some(Err(error.to_string()));
                    failed = true;
                    idle = false;
                }
            }
            if !idle {
                // Sessions as they are after the change; otherwise the periodic poll.
                let sessions = poll_state(&mut applier, &metrics).await;
                frr_answering = sessions.is_some();
                if let Some(sessions) = sessions {
                    released = observe_sessions(&mut hold, &sessions) && holding;
                }
            }
        }

        let state =
            plan::configuration_state(&pass.load, last_apply.as_ref(), sent_state.as_ref(), &now());
        if sent_state.as_ref() != Some(&state) {
            idle = false;
            state_tx.send_replace(Some(state.clone()));
            sent_state = Some(state);
        }
        if pass.model.is_some() {
            let wanted = planner.statuses();
            statuses.send_if_modified(|written| {
                let changed = !written.as_ref().is_some_and(|w| Arc::ptr_eq(w, &wanted));
                if changed {
                    *written = Some(wanted);
                }
                idle &= !changed;
                changed
            });
        }
        drop(objects);
        if trim_memory {
            release_free_memory();
            trim_memory = false;
        }
        tracing::debug!(
            snapshot_ms,
            plan_ms,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "pass done"
        );
        let done = Instant::now();
        let next = earliest_next(busy_end, done, done - started, idle, options.coalesce);
        if !idle {
            busy_end = done;
        }
        if released {
            // Later reads find nothing more to release, so waiting would leave the neighbour
            // without BFD until some other change.
            continue;
        }

        // Wait for a change, a poll that finds FRR drifted or answering again, a retry, or
        // the end. The retry's deadline is fixed here: the loop below goes round at every
        // poll and hold recheck, and a sleep made anew each time would never end.
        let retry_at = if failed {
            let wait = retry;
            retry = (retry * 2).min(RETRY_MAX);
            Some(tokio::time::Instant::now() + wait)
        } else {
            None
        };
        loop {
            tokio::select! {
                () = changes.wait() => {
                    tokio::time::sleep_until(next.into()).await;
                    break;
                }
                () = layer2.liveness_changed() => break,
                Some((request, outcome, took)) = proxy_probes.recv() => {
                    if planner.release_probe(&request.key, request.id) {
                        log_probe(&request, outcome, took);
                        break;
                    }
                }
                () = sleep_until(retry_at), if retry_at.is_some() => break,
                () = tokio::time::sleep(HOLD_RECHECK), if holding => {
                    if let Some(sessions) = read_sessions(&mut applier).await
                        && observe_sessions(&mut hold, &sessions)
                    {
                        break;
                    }
                }
                _ = poll.tick() => {
                    release_free_memory();
                    let sessions = poll_state(&mut applier, &metrics).await;
                    let back = sessions.is_some() && !frr_answering;
                    frr_answering = sessions.is_some();
                    if back && retry_at.is_some() {
                        tracing::info!("FRR answers again; applying its configuration now");
                        break;
                    }
                    if let Some(sessions) = sessions
                        && observe_sessions(&mut hold, &sessions)
                        && holding
                    {
                        break;
                    }
                    if let Some(difference) = drifted(&mut applier).await {
                        tracing::warn!(%difference, "FRR's running configuration differs from the applied one (restart or hand edit); applying again");
                        applier.forget();
                        break;
                    }
                }
                () = shutdown.cancelled() => {
                    leave(&client, &options, &mut applier).await;
                    return Ok(());
                }
            }
        }
    }
}

/// A probe's end: what it asked, how it ended, after how long.
type ProbeEnd = (proxy::ProbeRequest, proxy::ProbeOutcome, Duration);

/// Starts a kube-proxy probe for each of `requests` on this node's first address; with no
/// address known, releases them at once.
fn start_probes(
    requests: Vec<proxy::ProbeRequest>,
    objects: &crate::config::ClusterObjects,
    options: &Options,
    ended: &tokio::sync::mpsc::UnboundedSender<ProbeEnd>,
) {
    if requests.is_empty() {
        return;
    }
    let address = objects
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(options.node_name.as_str()))
        .and_then(|n| {
            crate::views::NodeView::from_node(n)
                .addresses
                .first()
                .copied()
        });
    for request in requests {
        let ended = ended.clone();
        match address {
            Some(ip) => {
                tokio::spawn(async move {
                    let (outcome, took) = proxy::probe(ip, request.port).await;
                    let _ = ended.send((request, outcome, took));
                });
            }
            None => {
                let _ = ended.send((request, proxy::ProbeOutcome::NoProxy, Duration::ZERO));
            }
        }
    }
}

fn log_probe(request: &proxy::ProbeRequest, outcome: proxy::ProbeOutcome, took: Duration) {
    let service = &request.key;
    let ms = format!("{:.0}", took.as_secs_f64() * 1e3);
    match outcome {
        proxy::ProbeOutcome::Forwarding => tracing::info!(
            %service, ms, port = request.port,
            "kube-proxy forwards to this node's new endpoints; announcing"
        ),
        proxy::ProbeOutcome::NoProxy => tracing::debug!(
            %service, port = request.port,
            "no kube-proxy health check on the node; announcing"
        ),
        proxy::ProbeOutcome::TimedOut => tracing::warn!(
            %service, ms, port = request.port,
            "kube-proxy's health check did not report this node's new endpoints in time; announcing anyway"
        ),
    }
}

/// At shutdown: removes FRR's BGP routers when the speaker goes for good (see [`leaving`]).
async fn leave(client: &kube::Client, options: &Options, applier: &mut Applier) {
    let Some(pod) = &options.pod_name else {
        return;
    };
    let check = leaving::going_for_good(client, &options.namespace, pod, &options.node_name);
    let Ok(reason) = tokio::time::timeout(Duration::from_millis(800), check).await else {
        tracing::info!(
            "stopping; the API server did not answer in time, so the BGP sessions are left to end with FRR"
        );
        return;
    };
    let Some(reason) = reason else {
        tracing::info!(
            "stopping for a restart; FRR's BGP sessions end with its container, and peers with graceful restart keep the routes"
        );
        return;
    };
    match applier.remove_routers().await {
        Ok(routers) => {
            tracing::info!(%reason, routers, "stopping for good: BGP routers removed, every session ended with a Cease");
        }
        Err(error) => {
            tracing::warn!(%reason, %error, "stopping for good, but the BGP routers could not be removed")
        }
    }
}

/// The earliest start of the pass after one that ended at `end` after running for `took`.
/// A pass that changed something is followed by `window` of gathering, so a burst's other
/// changes come along (as [`crate::shell::runtime::gather`] does). One that changed nothing (a
/// Service created without an IP yet, endpoints moving between serving nodes) holds the
/// next only as long as it ran itself, and `window` after the last pass that changed
/// something (`busy_end`): the change that typically follows it, the IP the controller has
/// just assigned, is not kept waiting, while a storm of changes that change nothing still
/// leaves the speaker idle at least half the time.
fn earliest_next(
    busy_end: Instant,
    end: Instant,
    took: Duration,
    idle: bool,
    window: Duration,
) -> Instant {
    if idle {
        (busy_end + window).max(end + took)
    } else {
        end + window
    }
}

/// Sleeps until `at`; never ends when `at` is `None`.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_retry_comes_at_its_deadline_however_often_the_wait_is_woken() {
        // The speaker's wait goes round at every poll and hold recheck (250 ms); a retry
        // 10 s away must still come, 10 s after the failure.
        let start = tokio::time::Instant::now();
        let retry_at = Some(start + Duration::from_secs(10));
        let mut rounds = 0;
        loop {
            tokio::select! {
                () = sleep_until(retry_at), if retry_at.is_some() => break,
                () = tokio::time::sleep(HOLD_RECHECK) => rounds += 1,
            }
        }
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert!(rounds >= 39, "woken {rounds} times");
        // None: only the other branches end the wait.
        tokio::select! {
            () = sleep_until(None) => panic!("a wait without a deadline ended"),
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }

    #[test]
    fn a_pass_that_changed_nothing_holds_the_next_only_as_long_as_it_ran() {
        let window = Duration::from_millis(10);
        let start = Instant::now();
        let ms = Duration::from_millis;
        // A busy pass: the whole window follows it.
        assert_eq!(
            earliest_next(start, start, ms(30), false, window),
            start + window
        );
        // An idle pass of 3 ms right after a busy one: the busy one's window still holds.
        let end = start + ms(4);
        assert_eq!(
            earliest_next(start, end, ms(3), true, window),
            start + window
        );
        // Later, only its own length.
        let end = start + ms(50);
        assert_eq!(earliest_next(start, end, ms(3), true, window), end + ms(3));
    }
}
