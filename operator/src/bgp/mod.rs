//! BGP intent for one node: which sessions the node opens and, for each session, which
//! prefixes it announces with which attributes.
//!
//! [`intent`] is pure and follows MetalLB's speaker. A session exists for every BGPPeer whose
//! nodeSelectors match the node. A Service is announced from the node when all of these hold,
//! checked in this order, the first failure being the reason it is not:
//! it has ingress IPs; they all lie in one pool; a BGPAdvertisement of that pool selects the
//! node; one of those also selects the Service; the node is not `NetworkUnavailable` and not
//! labelled for exclusion; and its endpoints allow it (`externalTrafficPolicy: Local` needs a
//! serving endpoint on this node, `Cluster` one anywhere).
//! Each ingress IP is masked to the advertisement's aggregation length; the prefix goes to the
//! advertisement's `peers` (all when empty) whose session carries that address family.
//! Prefixes reached by several advertisements or Services are announced once, with the union
//! of their communities; LOCAL_PREF is set on iBGP sessions only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;

use crate::config::{BgpAdvertisement, BgpCommunity, Config, Peer, PeerEndpoint};
use crate::views::{LbService, NodeView, ServiceKey, ServiceScope, ServingEndpoints};

/// Everything [`intent`] reads besides the configuration.
#[derive(Clone, Copy, Debug)]
pub struct IntentInputs<'a> {
    /// The node the intent is for.
    pub node: &'a NodeView,
    /// All Services (those out of scope are skipped).
    pub services: &'a [LbService],
    /// Serving endpoints per Service; a Service missing here has none.
    pub endpoints: &'a BTreeMap<ServiceKey, ServingEndpoints>,
    /// Which Services this instance handles.
    pub scope: &'a ServiceScope,
    /// Announce from nodes labelled for exclusion anyway (MetalLB's `--ignore-exclude-lb`).
    pub ignore_exclude_label: bool,
    /// Local Services whose endpoints on this node kube-proxy does not forward to yet.
    pub held: &'a BTreeSet<ServiceKey>,
}

/// Attributes a prefix is announced with to one session.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RouteAttributes {
    /// LOCAL_PREF (iBGP sessions only).
    #[serde(rename = "localPref", skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// Standard and large communities.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub communities: BTreeSet<BgpCommunity>,
}

/// One BGP session of the node and what it announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionIntent {
    /// The BGPPeer the session comes from.
    pub peer: Peer,
    /// Announced prefixes and their attributes.
    pub announcements: BTreeMap<IpNet, RouteAttributes>,
}

impl SessionIntent {
    /// Whether the session carries IPv4 unicast.
    pub fn carries_ipv4(&self) -> bool {
        carries(&self.peer, false)
    }

    /// Whether the session carries IPv6 unicast.
    pub fn carries_ipv6(&self) -> bool {
        carries(&self.peer, true)
    }
}

/// Why a Service is not announced over BGP from the node (MetalLB's reason words).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum NotAnnounced {
    /// No ingress IP yet.
    NoIpAllocated,
    /// The ingress IPs are not all in one configured pool.
    IpNotAllowed,
    /// No BGPAdvertisement of the pool selects this node.
    NotOwner,
    /// No BGPAdvertisement selecting this node also selects the Service.
    NoMatchingAdvertisement,
    /// The node's `NetworkUnavailable` condition is true.
    NodeNetworkUnavailable,
    /// The node is tainted `node.kubernetes.io/out-of-service`.
    NodeOutOfService,
    /// The node carries the exclusion label.
    NodeLabeledExcludeBalancers,
    /// `externalTrafficPolicy: Local` and no serving endpoint on this node.
    NoLocalEndpoints,
    /// `externalTrafficPolicy: Local`, and kube-proxy on this node does not forward to its
    /// new local endpoints yet (`crate::speaker::proxy`).
    ProxyNotReady,
    /// No serving endpoint anywhere.
    NoEndpoints,
    /// Announced, but no session of this node receives any of its prefixes.
    NoPeers,
}

/// The BGP outcome for one Service on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceBgp {
    /// Announced: the prefixes and the BGPPeers (by name) receiving them.
    Announced {
        /// The prefixes (after aggregation).
        prefixes: BTreeSet<IpNet>,
        /// The receiving BGPPeers (one copy shared by every Service with the same ones).
        peers: Arc<BTreeSet<String>>,
    },
    /// Not announced, and why.
    NotAnnounced(NotAnnounced),
}

/// The node's whole BGP intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIntent {
    /// The node.
    pub node: String,
    /// Sessions, ordered by VRF (default first) then endpoint.
    pub sessions: Vec<SessionIntent>,
    /// Outcome per in-scope Service whose pool has at least one BGPAdvertisement.
    pub services: BTreeMap<ServiceKey, ServiceBgp>,
}

impl NodeIntent {
    /// Each announced prefix and the BGPPeers (by name) receiving it.
    pub fn receivers(&self) -> BTreeMap<IpNet, BTreeSet<String>> {
        let mut out: BTreeMap<IpNet, BTreeSet<String>> = BTreeMap::new();
        for session in &self.sessions {
            for prefix in session.announcements.keys() {
                out.entry(*prefix)
                    .or_default()
                    .insert(session.peer.name.clone());
            }
        }
        out
    }
}

/// Computes the node's BGP intent.
pub fn intent(config: &Config, inputs: &IntentInputs<'_>) -> NodeIntent {
    IntentState::new(config, inputs).intent
}

/// A prefix's place in one session: (session index, prefix, advertisement index).
type Reach = (usize, IpNet, usize);

/// The node's intent kept up to date Service by Service: [`IntentState::new`] computes it
/// for all Services (that is [`intent`]), [`IntentState::update`] re-decides one Service
/// and changes only the prefixes it touches. Valid while the configuration and the node
/// stay the same; after a change of either, build it anew.
#[derive(Clone, Debug)]
pub struct IntentState {
    plan: Plan,
    /// Per session: each announced prefix and the advertisements reaching it, with how
    /// many Services reach it through each.
    refs: Vec<BTreeMap<IpNet, Vec<(usize, u32)>>>,
    /// Per Service: what it put into `refs`.
    reaches: BTreeMap<ServiceKey, Vec<Reach>>,
    peer_sets: PeerSets,
    intent: NodeIntent,
    /// Counts the updates that changed an announcement (a prefix or its attributes).
    revision: u64,
}

/// The sets of receiving peers handed out so far. Thousands of Services go to the same few
/// combinations of peers; each holds a pointer to one shared copy rather than its own set.
#[derive(Clone, Debug, Default)]
struct PeerSets(Vec<Arc<BTreeSet<String>>>);

impl PeerSets {
    /// Sets kept for sharing; past this, sets no Service holds any more are dropped first.
    const KEPT: usize = 64;

    fn share(&mut self, peers: BTreeSet<String>) -> Arc<BTreeSet<String>> {
        if let Some(shared) = self.0.iter().find(|s| ***s == peers) {
            return Arc::clone(shared);
        }
        if self.0.len() >= Self::KEPT {
            self.0.retain(|s| Arc::strong_count(s) > 1);
        }
        let shared = Arc::new(peers);
        if self.0.len() < Self::KEPT {
            self.0.push(Arc::clone(&shared));
        }
        shared
    }
}

/// A prefix whose receivers changed: the BGPPeers (by name) it went to before and goes to now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixChange {
    /// The prefix.
    pub prefix: IpNet,
    /// The peers receiving it before.
    pub before: BTreeSet<String>,
    /// The peers receiving it now.
    pub after: BTreeSet<String>,
}

impl IntentState {
    /// The intent for every Service of `inputs`.
    pub fn new(config: &Config, inputs: &IntentInputs<'_>) -> IntentState {
        let node = inputs.node;
        let mut peers: Vec<&Peer> = config
            .peers
            .values()
            .filter(|p| p.selects_node(&node.labels))
            .collect();
        peers.sort_by(|a, b| (&a.vrf, &a.endpoint, &a.name).cmp(&(&b.vrf, &b.endpoint, &b.name)));
        let plan = Plan::new(config, node, &peers);
        let mut refs: Vec<BTreeMap<IpNet, Vec<(usize, u32)>>> = vec![BTreeMap::new(); peers.len()];
        let mut reaches = BTreeMap::new();
        let mut services = BTreeMap::new();
        let mut reached = Vec::new();
        let mut peer_sets = PeerSets::default();
        for service in inputs.services.iter().filter(|s| s.in_scope(inputs.scope)) {
            reached.clear();
            let Some(outcome) =
                announce_service(config, &plan, inputs, service, &mut reached, &mut peer_sets)
            else {
                continue;
            };
            for (s, prefix, ad) in &reached {
                add_ref(refs[*s].entry(*prefix).or_default(), *ad);
            }
            if !reached.is_empty() {
                reaches.insert(service.key.clone(), reached.clone());
            }
            services.insert(service.key.clone(), outcome);
        }
        let sessions = peers
            .iter()
            .zip(&refs)
            .enumerate()
            .map(|(s, (peer, refs))| SessionIntent {
                peer: (*peer).clone(),
                announcements: refs
                    .iter()
                    .map(|(prefix, ads)| (*prefix, plan.merged(s, ads)))
                    .collect(),
            })
            .collect();
        IntentState {
            plan,
            refs,
            reaches,
            peer_sets,
            intent: NodeIntent {
                node: node.name.clone(),
                sessions,
                services,
            },
            revision: 0,
        }
    }

    /// The intent now.
    pub fn intent(&self) -> &NodeIntent {
        &self.intent
    }

    /// Changes when, and only when, an [`update`](Self::update) changes what a session
    /// announces (a prefix or its attributes): while it stays, so does everything built from
    /// the sessions' announcements.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Decides the Services `keys` again with what `inputs` says of them now (a key missing
    /// from `inputs.services` is a deleted Service); `inputs` must hold the same node, and
    /// `config` be the configuration, this state was built with. Returns the prefixes whose
    /// receivers changed, in prefix order.
    pub fn update<'k>(
        &mut self,
        config: &Config,
        inputs: &IntentInputs<'_>,
        keys: impl IntoIterator<Item = &'k ServiceKey>,
        find: impl Fn(&ServiceKey) -> Option<&'k LbService>,
    ) -> Vec<PrefixChange> {
        let mut touched: BTreeSet<IpNet> = BTreeSet::new();
        let mut removed: Vec<Reach> = Vec::new();
        let mut added: Vec<Reach> = Vec::new();
        let mut reached = Vec::new();
        for key in keys {
            if let Some(old) = self.reaches.remove(key) {
                removed.extend(old);
            }
            self.intent.services.remove(key);
            let Some(service) = find(key).filter(|s| s.in_scope(inputs.scope)) else {
                continue;
            };
            reached.clear();
            let Some(outcome) = announce_service(
                config,
                &self.plan,
                inputs,
                service,
                &mut reached,
                &mut self.peer_sets,
            ) else {
                continue;
            };
            if !reached.is_empty() {
                added.extend(reached.iter().copied());
                self.reaches.insert(key.clone(), reached.clone());
            }
            self.intent.services.insert(key.clone(), outcome);
        }
        touched.extend(removed.iter().chain(&added).map(|(_, p, _)| *p));
        let receivers = |intent: &NodeIntent, prefix: &IpNet| -> BTreeSet<String> {
            intent
                .sessions
                .iter()
                .filter(|s| s.announcements.contains_key(prefix))
                .map(|s| s.peer.name.clone())
                .collect()
        };
        let before: Vec<BTreeSet<String>> =
            touched.iter().map(|p| receivers(&self.intent, p)).collect();
        for (s, prefix, ad) in removed {
            if let Some(ads) = self.refs[s].get_mut(&prefix) {
                if let Some(at) = ads.iter().position(|(a, _)| *a == ad) {
                    ads[at].1 -= 1;
                    if ads[at].1 == 0 {
                        ads.remove(at);
                    }
                }
                if ads.is_empty() {
                    self.refs[s].remove(&prefix);
                }
            }
        }
        for (s, prefix, ad) in added {
            add_ref(self.refs[s].entry(prefix).or_default(), ad);
        }
        let mut changes = Vec::new();
        let mut announced = false;
        for (prefix, before) in touched.into_iter().zip(before) {
            for (s, session) in self.intent.sessions.iter_mut().enumerate() {
                match self.refs[s].get(&prefix) {
                    Some(ads) => {
                        let attributes = self.plan.merged(s, ads);
                        if session.announcements.get(&prefix) != Some(&attributes) {
                            session.announcements.insert(prefix, attributes);
                            announced = true;
                        }
                    }
                    None => {
                        announced |= session.announcements.remove(&prefix).is_some();
                    }
                }
            }
            let after = receivers(&self.intent, &prefix);
            if after != before {
                changes.push(PrefixChange {
                    prefix,
                    before,
                    after,
                });
            }
        }
        if announced {
            self.revision += 1;
        }
        changes
    }
}

fn add_ref(ads: &mut Vec<(usize, u32)>, ad: usize) {
    match ads.iter_mut().find(|(a, _)| *a == ad) {
        Some((_, n)) => *n += 1,
        None => {
            ads.push((ad, 1));
            ads.sort_unstable();
        }
    }
}

/// What [`intent`] works out once per configuration and node rather than once per Service.
#[derive(Clone, Debug)]
struct Plan {
    /// Session names, in session order.
    peer_names: Vec<String>,
    /// Per pool: its BGPAdvertisements (index into `ads`) that select the node.
    pool_ads: BTreeMap<String, Vec<usize>>,
    /// The advertisements that select the node.
    ads: Vec<BgpAdvertisement>,
    /// Per advertisement and session: whether the session receives that advertisement's
    /// prefixes of each family.
    reaches: Vec<Vec<[bool; 2]>>,
    /// Per advertisement and session: the attributes it gives.
    attributes: Vec<Vec<RouteAttributes>>,
}

impl Plan {
    fn new(config: &Config, node: &NodeView, peers: &[&Peer]) -> Plan {
        let ads: Vec<&BgpAdvertisement> = config
            .bgp_advertisements
            .values()
            .filter(|ad| ad.selects_node(&node.labels))
            .collect();
        let mut pool_ads: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for pool in config.pools.values() {
            let selected = pool
                .bgp_advertisements
                .iter()
                .filter_map(|name| ads.iter().position(|ad| ad.name == *name))
                .collect();
            pool_ads.insert(pool.name.clone(), selected);
        }
        let reaches = ads
            .iter()
            .map(|ad| {
                peers
                    .iter()
                    .map(|p| {
                        let to = ad.reaches_peer(&p.name);
                        [to && carries(p, false), to && carries(p, true)]
                    })
                    .collect()
            })
            .collect();
        let attributes = ads
            .iter()
            .map(|ad| {
                peers
                    .iter()
                    .map(|p| RouteAttributes {
                        local_pref: if p.is_ibgp() { ad.local_pref } else { None },
                        communities: ad.communities.iter().copied().collect(),
                    })
                    .collect()
            })
            .collect();
        Plan {
            peer_names: peers.iter().map(|p| p.name.clone()).collect(),
            pool_ads,
            ads: ads.into_iter().cloned().collect(),
            reaches,
            attributes,
        }
    }

    /// The attributes of a prefix on session `s` reached through the advertisements `ads`:
    /// the union of their communities, and the highest LOCAL_PREF (the loader rejects
    /// advertisements that could give one prefix two; should one slip through, the higher
    /// wins).
    fn merged(&self, s: usize, ads: &[(usize, u32)]) -> RouteAttributes {
        let mut out = RouteAttributes::default();
        for (ad, _) in ads {
            let attributes = &self.attributes[*ad][s];
            out.local_pref = out.local_pref.max(attributes.local_pref);
            out.communities
                .extend(attributes.communities.iter().copied());
        }
        out
    }
}

/// Whether a session with the peer carries IPv6 (`true`) or IPv4 (`false`) unicast.
fn carries(peer: &Peer, ipv6: bool) -> bool {
    match peer.endpoint {
        PeerEndpoint::Interface(_) => true,
        PeerEndpoint::Address(a) => a.is_ipv6() == ipv6 || peer.dual_stack_address_family,
    }
}

/// Decides one Service; the prefixes it sends to each session go to `reached`.
fn announce_service(
    config: &Config,
    plan: &Plan,
    inputs: &IntentInputs<'_>,
    service: &LbService,
    reached: &mut Vec<Reach>,
    peer_sets: &mut PeerSets,
) -> Option<ServiceBgp> {
    use NotAnnounced::*;
    let node = inputs.node;
    let not = |reason| Some(ServiceBgp::NotAnnounced(reason));
    if service.ingress.is_empty() {
        return not(NoIpAllocated);
    }
    let Some(pool) = config.pool_of(&service.ingress) else {
        return not(IpNotAllowed);
    };
    if pool.bgp_advertisements.is_empty() {
        return None;
    }
    let for_node = plan
        .pool_ads
        .get(pool.name.as_str())
        .map(Vec::as_slice)
        .unwrap_or_default();
    if for_node.is_empty() {
        return not(NotOwner);
    }
    let matching: Vec<usize> = for_node
        .iter()
        .copied()
        .filter(|a| crate::config::any_matches(&plan.ads[*a].service_selectors, &service.labels))
        .collect();
    if matching.is_empty() {
        return not(NoMatchingAdvertisement);
    }
    if node.network_unavailable {
        return not(NodeNetworkUnavailable);
    }
    if node.out_of_service {
        return not(NodeOutOfService);
    }
    if node.excluded && !inputs.ignore_exclude_label {
        return not(NodeLabeledExcludeBalancers);
    }
    let endpoints = inputs.endpoints.get(&service.key);
    if service.traffic_policy_local {
        if !endpoints.is_some_and(|e| e.on_node(&node.name)) {
            return not(NoLocalEndpoints);
        }
        if inputs.held.contains(&service.key) {
            return not(ProxyNotReady);
        }
    } else if !endpoints.is_some_and(|e| e.any) {
        return not(NoEndpoints);
    }
    let mut prefixes = BTreeSet::new();
    let mut to = vec![false; plan.peer_names.len()];
    for ip in &service.ingress {
        let f = usize::from(ip.is_ipv6());
        for a in &matching {
            let prefix = aggregate(*ip, &plan.ads[*a]);
            prefixes.insert(prefix);
            for (s, to) in to.iter_mut().enumerate() {
                if plan.reaches[*a][s][f] {
                    reached.push((s, prefix, *a));
                    *to = true;
                }
            }
        }
    }
    // Each (session, prefix, advertisement) once per Service, however many of its IPs
    // aggregate into the prefix.
    reached.sort_unstable();
    reached.dedup();
    let peers: BTreeSet<String> = to
        .iter()
        .zip(&plan.peer_names)
        .filter(|(t, _)| **t)
        .map(|(_, name)| name.to_string())
        .collect();
    if peers.is_empty() {
        return not(NoPeers);
    }
    Some(ServiceBgp::Announced {
        prefixes,
        peers: peer_sets.share(peers),
    })
}

/// The ingress IP masked to the advertisement's aggregation length for its family.
pub fn aggregate(ip: IpAddr, ad: &BgpAdvertisement) -> IpNet {
    let length = match ip {
        IpAddr::V4(_) => ad.aggregation_length,
        IpAddr::V6(_) => ad.aggregation_length_v6,
    };
    IpNet::new(ip, length)
        .map(|n| n.trunc())
        .unwrap_or_else(|_| IpNet::from(ip))
}

#[cfg(test)]
mod tests;
