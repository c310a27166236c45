//! The speaker's layer-2 side, around the pure election in each pass:
//!
//! - gossip ([`crate::l2::members`]) starts once the key Secret can be read and this node's
//!   address is known; its seeds are every Node's first address, refreshed on each pass; a
//!   change in who is alive triggers a pass at once;
//! - the IPs each pass elects this node for go to the responder
//!   ([`crate::l2::responder`]), which answers for exactly those from then on;
//! - every Service this node starts or stops answering for is logged, one ServiceL2Status per
//!   Service is kept, and a `nodeAssigned` Event is posted on a Service when this node takes it
//!   over.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Secret, Service};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::status::StatusWriter;
use super::{FIELD_MANAGER, Options};
use crate::api::ServiceL2Status;
use crate::l2::L2Announcement;
use crate::l2::isolation::Isolation;
use crate::l2::members::{Liveness, Members, MembersMetrics, MembersOptions, Timings};
use crate::l2::responder::{self, Owned, ResponderOptions};
use crate::views::{NodeView, ServiceKey};

/// The key in the gossip Secret (MetalLB's).
pub(super) const SECRET_KEY: &str = "secretkey";
/// Events posted at once.
const EVENTS_IN_FLIGHT: usize = 8;
/// How often a missing Secret or address is looked for again.
const WAIT: Duration = Duration::from_secs(2);
/// How often binding the gossip socket is tried again: during a hand-over from MetalLB its
/// speaker holds the port until it exits, and this node's IPs wait for this one to join.
const BIND_RETRY: Duration = Duration::from_millis(200);

type Statuses = Option<super::status::Wanted>;

/// The running layer-2 side.
pub(super) struct Layer2 {
    node: String,
    port: u16,
    seeds: watch::Sender<BTreeMap<String, SocketAddr>>,
    liveness: watch::Receiver<Liveness>,
    /// Nodes where MetalLB's speaker still answers ([`super::handover`]).
    held: watch::Receiver<BTreeSet<String>>,
    owned: watch::Sender<Owned>,
    /// Who was alive at the last announce.
    alive: BTreeSet<String>,
    /// [`Liveness::rejoined`] as last seen.
    rejoined: u64,
    statuses: watch::Sender<Statuses>,
    client: Client,
    recorder: Recorder,
    /// Bounds the Events in flight (taking over thousands of Services at once must not
    /// open thousands of requests).
    events: Arc<tokio::sync::Semaphore>,
}

impl Layer2 {
    /// Starts the responder, gossip and the status writer in the background.
    pub(super) fn start(
        client: &Client,
        options: &Options,
        metrics: &Metrics,
        shutdown: &CancellationToken,
    ) -> Layer2 {
        let (owned, owned_rx) = watch::channel(Owned::default());
        tokio::spawn(responder::run(
            ResponderOptions {
                exclusions: options.l2.exclusions.clone(),
                ..ResponderOptions::default()
            },
            owned_rx,
            Arc::clone(&metrics.l2),
            shutdown.clone(),
        ));
        let (seeds, seeds_rx) = watch::channel(BTreeMap::new());
        let (liveness_tx, liveness) = watch::channel(Liveness::default());
        tokio::spawn(membership(
            client.clone(),
            options.clone(),
            seeds_rx,
            liveness_tx,
            Arc::clone(&metrics.members),
            shutdown.clone(),
        ));
        let (held_tx, held) = watch::channel(BTreeSet::new());
        tokio::spawn(super::handover::run(
            client.clone(),
            options.namespace.clone(),
            held_tx,
            shutdown.clone(),
        ));
        let (statuses, wanted) = watch::channel(None);
        tokio::spawn(
            StatusWriter::<ServiceL2Status>::new(
                client.clone(),
                &options.namespace,
                &options.node_name,
            )
            .run(
                wanted,
                metrics.client.update_errors.clone(),
                shutdown.clone(),
            ),
        );
        Layer2 {
            node: options.node_name.clone(),
            port: options.l2.port,
            seeds,
            liveness,
            held,
            owned,
            alive: BTreeSet::new(),
            rejoined: 0,
            statuses,
            client: client.clone(),
            events: Arc::new(tokio::sync::Semaphore::new(EVENTS_IN_FLIGHT)),
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: FIELD_MANAGER.to_string(),
                    instance: Some(options.node_name.clone()),
                },
            ),
        }
    }

    /// Refreshes the gossip seeds from the Nodes.
    pub(super) fn seed(&self, nodes: &[Node]) {
        let seeds: BTreeMap<String, SocketAddr> = nodes
            .iter()
            .map(NodeView::from_node)
            .filter_map(|n| {
                let ip = *n.addresses.first()?;
                Some((n.name, SocketAddr::new(ip, self.port)))
            })
            .collect();
        self.seeds.send_if_modified(|was| {
            let changed = *was != seeds;
            if changed {
                *was = seeds;
            }
            changed
        });
    }

    /// Who is alive now: the speakers gossip knows, and the nodes where MetalLB's speaker
    /// still answers ([`super::handover`]).
    pub(super) fn liveness(&self) -> Liveness {
        let mut liveness = self.liveness.borrow().clone();
        liveness.alive.extend(self.held.borrow().iter().cloned());
        liveness
    }

    /// Resolves when who is alive changes.
    pub(super) async fn liveness_changed(&mut self) {
        tokio::select! {
            Ok(()) = self.liveness.changed() => {}
            Ok(()) = self.held.changed() => {}
            else => std::future::pending().await,
        }
    }

    /// Makes `list` what this node answers for; `liveness` is who was alive when it was
    /// elected (a speaker that joins makes this node announce its IPs again).
    pub(super) fn announce(&mut self, list: &[L2Announcement], liveness: &Liveness) {
        let joined = must_reannounce(&self.alive, self.rejoined, liveness);
        self.alive.clone_from(&liveness.alive);
        self.rejoined = liveness.rejoined;
        let before: BTreeMap<ServiceKey, Vec<IpAddr>> = self
            .owned
            .borrow()
            .list
            .iter()
            .map(|a| (a.service.clone(), a.ips.clone()))
            .collect();
        let after: BTreeMap<ServiceKey, Vec<IpAddr>> = list
            .iter()
            .map(|a| (a.service.clone(), a.ips.clone()))
            .collect();
        if !joined && self.owned.borrow().list == list {
            return;
        }
        self.owned.send_modify(|owned| {
            owned.list = list.to_vec();
            if joined {
                owned.epoch += 1;
            }
        });
        for (key, ips) in &after {
            if before.get(key) != Some(ips) {
                let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
                tracing::info!(service = %key, ips = %ips.join(", "), "layer 2: answering");
                self.assigned(key.clone());
            }
        }
        for (key, ips) in &before {
            if !after.contains_key(key) {
                let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
                tracing::info!(service = %key, ips = %ips.join(", "), "layer 2: no longer answering");
            }
        }
        let wanted: BTreeMap<ServiceKey, super::status::Names> = list
            .iter()
            .map(|a| (a.service.clone(), Arc::new(a.interfaces.clone())))
            .collect();
        self.statuses.send_if_modified(|written| {
            if written.as_deref() == Some(&wanted) {
                return false;
            }
            *written = Some(Arc::new(wanted));
            true
        });
    }

    /// Posts `nodeAssigned` on the Service, in the background.
    fn assigned(&self, key: ServiceKey) {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
        let recorder = self.recorder.clone();
        let node = self.node.clone();
        let events = Arc::clone(&self.events);
        tokio::spawn(async move {
            let Ok(_permit) = events.acquire().await else {
                return;
            };
            let Ok(Some(service)) = api.get_opt(&key.name).await else {
                return;
            };
            let event = Event {
                type_: EventType::Normal,
                reason: "nodeAssigned".to_string(),
                note: Some(format!(
                    "announcing from node \"{node}\" with protocol \"layer2\""
                )),
                action: "Announce".to_string(),
                secondary: None,
            };
            if let Err(error) = recorder.publish(&event, &service.object_ref(&())).await {
                tracing::debug!(service = %key, %error, "posting nodeAssigned");
            }
        });
    }
}

/// Whether every IP this node owns must be announced again, going from `alive` and
/// `rejoined` to `now`: a speaker joined (while apart it may have claimed them and told the
/// clients so), or this one rejoined after the others held it down (they took its IPs
/// meanwhile; it may have seen none of them go, and so no one join).
fn must_reannounce(alive: &BTreeSet<String>, rejoined: u64, now: &Liveness) -> bool {
    now.alive.difference(alive).next().is_some() || now.rejoined != rejoined
}

/// Reads the key, waits for this node's address, then gossips with the seeds until
/// `shutdown`, forwarding who is alive.
async fn membership(
    client: Client,
    options: Options,
    mut seeds: watch::Receiver<BTreeMap<String, SocketAddr>>,
    liveness: watch::Sender<Liveness>,
    metrics: Arc<MembersMetrics>,
    shutdown: CancellationToken,
) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &options.namespace);
    let name = &options.l2.secret;
    let mut warned = false;
    let key = loop {
        let problem = match secrets.get_opt(name).await {
            Ok(Some(secret)) => match secret.data.and_then(|mut d| d.remove(SECRET_KEY)) {
                Some(key) if !key.0.is_empty() => break key.0,
                _ => format!("Secret {}/{name} has no {SECRET_KEY:?}", options.namespace),
            },
            Ok(None) => format!("Secret {}/{name} does not exist", options.namespace),
            Err(error) => format!("reading Secret {}/{name}: {error}", options.namespace),
        };
        if !warned {
            tracing::warn!(%problem, "layer 2 waits for the gossip key: no layer-2 IP is answered for until it can be read");
            warned = true;
        }
        tokio::select! {
            () = tokio::time::sleep(WAIT) => {}
            () = shutdown.cancelled() => return,
        }
    };
    let advertise = loop {
        let found = options
            .l2
            .advertise
            .or_else(|| seeds.borrow().get(&options.node_name).map(SocketAddr::ip));
        if let Some(ip) = found {
            break ip;
        }
        tokio::select! {
            _ = seeds.changed() => {}
            () = tokio::time::sleep(WAIT) => {}
            () = shutdown.cancelled() => return,
        }
    };
    let any = if advertise.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let mut failures = 0u64;
    let members = loop {
        let started = Members::start(
            MembersOptions {
                node: options.node_name.clone(),
                bind: SocketAddr::new(any, options.l2.port),
                advertise: Some(SocketAddr::new(advertise, options.l2.port)),
                key: key.clone(),
                timings: options.l2.timings,
                accept_format_2: options.l2.accept_format_2,
            },
            Arc::clone(&metrics),
            shutdown.clone(),
        )
        .await;
        match started {
            Ok(members) => {
                if failures > 0 {
                    tracing::info!(port = options.l2.port, failures, "bound the gossip socket");
                }
                break members;
            }
            Err(error) => {
                // Once, then every minute or so.
                if failures.is_multiple_of(300) {
                    tracing::error!(port = options.l2.port, %error, "binding the gossip socket (held by MetalLB's speaker while it is replaced?); retrying");
                }
                failures += 1;
                tokio::select! {
                    () = tokio::time::sleep(BIND_RETRY) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    };
    let Timings {
        probe_period,
        suspect_to_down,
        ..
    } = options.l2.timings;
    tracing::info!(
        addr = %SocketAddr::new(advertise, options.l2.port),
        probe_ms = probe_period.as_millis() as u64,
        suspect_ms = suspect_to_down.as_millis() as u64,
        "gossiping with the other speakers"
    );
    members.seed(seeds.borrow_and_update().clone());
    let mut alive = members.liveness();
    let mut isolation = Isolation::new(options.l2.isolated_after);
    let (asking, asking_rx) = watch::channel(false);
    let (reached_tx, mut reached) = watch::channel(None);
    tokio::spawn(reach_api(client, asking_rx, reached_tx, shutdown.clone()));
    loop {
        let deadline = isolation
            .deadline()
            .filter(|at| *at > tokio::time::Instant::now());
        tokio::select! {
            changed = seeds.changed() => {
                if changed.is_err() {
                    return;
                }
                members.seed(seeds.borrow_and_update().clone());
            }
            changed = alive.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = reached.changed() => {
                if let Some(at) = *reached.borrow_and_update() {
                    isolation.reached(at);
                }
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {}
            () = shutdown.cancelled() => return,
        }
        let mut now = alive.borrow_and_update().clone();
        let others_known = seeds.borrow().keys().any(|n| *n != options.node_name);
        let alone = now.settled && others_known && now.alive.len() <= 1;
        now.isolated = isolation.observe(alone, tokio::time::Instant::now());
        asking.send_if_modified(|was| std::mem::replace(was, isolation.asking()) != *was);
        if now.isolated != liveness.borrow().isolated {
            if now.isolated {
                tracing::warn!(
                    after_ms = options.l2.isolated_after.unwrap_or_default().as_millis() as u64,
                    "cut off from every other speaker and from the API server: no longer answering for layer-2 IPs (the others have taken them over; --ml-isolated-ms)"
                );
            } else {
                tracing::info!("no longer cut off: layer-2 IPs are elected again");
            }
        }
        liveness.send_if_modified(|was| std::mem::replace(was, now.clone()) != now);
    }
}

/// How often, and for how long, the API server is asked while this speaker hears no other.
const API_PROBE: Duration = Duration::from_secs(1);

/// While `asking`, asks the API server for its version every [`API_PROBE`] and sends the
/// time of each answer to `reached`.
async fn reach_api(
    client: Client,
    mut asking: watch::Receiver<bool>,
    reached: watch::Sender<Option<tokio::time::Instant>>,
    shutdown: CancellationToken,
) {
    loop {
        if !*asking.borrow_and_update() {
            tokio::select! {
                changed = asking.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
            continue;
        }
        let asked = tokio::time::Instant::now();
        if let Ok(Ok(_)) = tokio::time::timeout(API_PROBE, client.apiserver_version()).await {
            reached.send_replace(Some(tokio::time::Instant::now()));
        }
        tokio::select! {
            () = tokio::time::sleep_until(asked + API_PROBE) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Seen in the campaign on real nodes: n2 kept seeing n1 alive while n1 twice declared
    /// n2 down, answered for n2's IP and told the client; n2 only rejoined, and the client
    /// kept n1's MAC until the next storm.
    #[test]
    fn a_join_or_a_rejoin_announces_every_owned_ip_again() {
        let both: BTreeSet<String> = ["n1", "n2"].map(String::from).into();
        let alone: BTreeSet<String> = ["n2"].map(String::from).into();
        let now = |alive: &BTreeSet<String>, rejoined| Liveness {
            alive: alive.clone(),
            settled: true,
            isolated: false,
            rejoined,
        };
        assert!(!must_reannounce(&both, 0, &now(&both, 0)));
        assert!(must_reannounce(&both, 0, &now(&both, 1)));
        assert!(must_reannounce(&alone, 1, &now(&both, 1)));
        assert!(!must_reannounce(&both, 1, &now(&alone, 1)));
    }

    fn client(addr: SocketAddr) -> Client {
        let url = format!("http://{addr}").parse().unwrap();
        Client::try_from(kube::Config::new(url)).unwrap()
    }

    /// Follows `reach_api` for `how_long`: the last answer it reported.
    async fn reached_within(
        client: Client,
        asking: bool,
        how_long: Duration,
    ) -> Option<tokio::time::Instant> {
        let (_asking, asking_rx) = watch::channel(asking);
        let (reached_tx, reached) = watch::channel(None);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(reach_api(client, asking_rx, reached_tx, shutdown.clone()));
        tokio::time::sleep(how_long).await;
        shutdown.cancel();
        task.await.unwrap();
        *reached.borrow()
    }

    /// The API server is asked only while the speaker hears no other, and only its answers
    /// count: a server that accepts the connection and says nothing is not reached.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_api_server_is_asked_only_while_alone_and_only_answers_count() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        let version = axum::Router::new().route(
            "/version",
            axum::routing::get(move || async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({
                    "major": "1", "minor": "37", "gitVersion": "v1.37.2", "gitCommit": "",
                    "gitTreeState": "clean", "buildDate": "", "goVersion": "",
                    "compiler": "gc", "platform": "linux/amd64",
                }))
            }),
        );
        tokio::spawn(async move { axum::serve(listener, version).await });

        let idle = reached_within(client(addr), false, Duration::from_millis(1_500)).await;
        assert_eq!((idle, asked.load(Ordering::SeqCst)), (None, 0));
        let started = tokio::time::Instant::now();
        let answered = reached_within(client(addr), true, Duration::from_millis(2_500)).await;
        assert!(answered.is_some_and(|at| at > started));
        assert!(asked.load(Ordering::SeqCst) >= 2, "asked once a second");

        // Accepts connections (the kernel does, from the backlog) and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let unanswered = reached_within(client(silent_addr), true, Duration::from_millis(2_500));
        assert_eq!(unanswered.await, None);
        drop(silent);
        let refused = reached_within(client(silent_addr), true, Duration::from_millis(1_500));
        assert_eq!(refused.await, None);
    }
}
