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
use crate::l2::members::{Liveness, Members, MembersMetrics, MembersOptions, Timings};
use crate::l2::responder::{self, Owned, ResponderOptions};
use crate::views::{NodeView, ServiceKey};

/// The key in the gossip Secret (MetalLB's).
pub(super) const SECRET_KEY: &str = "secretkey";
/// Events posted at once.
const EVENTS_IN_FLIGHT: usize = 8;
/// How often a missing Secret or address is looked for again.
const WAIT: Duration = Duration::from_secs(2);

type Statuses = Option<super::status::Wanted>;

/// The running layer-2 side.
pub(super) struct Layer2 {
    node: String,
    port: u16,
    seeds: watch::Sender<BTreeMap<String, SocketAddr>>,
    liveness: watch::Receiver<Liveness>,
    owned: watch::Sender<Owned>,
    /// Who was alive at the last announce.
    alive: BTreeSet<String>,
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
            owned,
            alive: BTreeSet::new(),
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

    /// Who is alive now.
    pub(super) fn liveness(&self) -> Liveness {
        self.liveness.borrow().clone()
    }

    /// Resolves when who is alive changes.
    pub(super) async fn liveness_changed(&mut self) {
        if self.liveness.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Makes `list` what this node answers for; `liveness` is who was alive when it was
    /// elected (a speaker that joins makes this node announce its IPs again).
    pub(super) fn announce(&mut self, list: &[L2Announcement], liveness: &Liveness) {
        let joined = liveness.alive.difference(&self.alive).next().is_some();
        self.alive.clone_from(&liveness.alive);
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
    let secrets: Api<Secret> = Api::namespaced(client, &options.namespace);
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
    let members = loop {
        let started = Members::start(
            MembersOptions {
                node: options.node_name.clone(),
                bind: SocketAddr::new(any, options.l2.port),
                advertise: Some(SocketAddr::new(advertise, options.l2.port)),
                key: key.clone(),
                timings: options.l2.timings,
            },
            Arc::clone(&metrics),
            shutdown.clone(),
        )
        .await;
        match started {
            Ok(members) => break members,
            Err(error) => {
                tracing::error!(port = options.l2.port, %error, "binding the gossip socket; retrying");
                tokio::select! {
                    () = tokio::time::sleep(WAIT) => {}
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
    loop {
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
                let now = alive.borrow_and_update().clone();
                liveness.send_replace(now);
            }
            () = shutdown.cancelled() => return,
        }
    }
}
