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

use ipnet::IpNet;
use serde::Serialize;

use crate::cluster::{LbService, NodeView, ServiceKey, ServiceScope, ServingEndpoints};
use crate::config::{BgpAdvertisement, BgpCommunity, Config, Peer, PeerEndpoint, Pool};

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
        match self.peer.endpoint {
            PeerEndpoint::Interface(_) => true,
            PeerEndpoint::Address(a) => a.is_ipv4() || self.peer.dual_stack_address_family,
        }
    }

    /// Whether the session carries IPv6 unicast.
    pub fn carries_ipv6(&self) -> bool {
        match self.peer.endpoint {
            PeerEndpoint::Interface(_) => true,
            PeerEndpoint::Address(a) => a.is_ipv6() || self.peer.dual_stack_address_family,
        }
    }

    fn carries(&self, prefix: &IpNet) -> bool {
        match prefix {
            IpNet::V4(_) => self.carries_ipv4(),
            IpNet::V6(_) => self.carries_ipv6(),
        }
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
    /// The node carries the exclusion label.
    NodeLabeledExcludeBalancers,
    /// `externalTrafficPolicy: Local` and no serving endpoint on this node.
    NoLocalEndpoints,
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
        /// The receiving BGPPeers.
        peers: BTreeSet<String>,
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

/// Computes the node's BGP intent.
pub fn intent(config: &Config, inputs: &IntentInputs<'_>) -> NodeIntent {
    let node = inputs.node;
    let mut sessions: Vec<SessionIntent> = config
        .peers
        .values()
        .filter(|p| p.selects_node(&node.labels))
        .map(|p| SessionIntent {
            peer: p.clone(),
            announcements: BTreeMap::new(),
        })
        .collect();
    sessions.sort_by(|a, b| {
        (&a.peer.vrf, &a.peer.endpoint, &a.peer.name).cmp(&(
            &b.peer.vrf,
            &b.peer.endpoint,
            &b.peer.name,
        ))
    });
    let mut services = BTreeMap::new();
    for service in inputs.services.iter().filter(|s| s.in_scope(inputs.scope)) {
        let Some(outcome) = announce_service(config, inputs, service, &mut sessions) else {
            continue;
        };
        services.insert(service.key.clone(), outcome);
    }
    NodeIntent {
        node: node.name.clone(),
        sessions,
        services,
    }
}

/// The pool holding every one of `ips`, if there is one.
pub fn pool_of<'c>(config: &'c Config, ips: &[IpAddr]) -> Option<&'c Pool> {
    let first = ips.first()?;
    let pool = config
        .pools
        .values()
        .find(|p| p.cidrs().any(|c| c.contains(first)))?;
    ips.iter()
        .all(|ip| pool.cidrs().any(|c| c.contains(ip)))
        .then_some(pool)
}

fn announce_service(
    config: &Config,
    inputs: &IntentInputs<'_>,
    service: &LbService,
    sessions: &mut [SessionIntent],
) -> Option<ServiceBgp> {
    use NotAnnounced::*;
    let node = inputs.node;
    let not = |reason| Some(ServiceBgp::NotAnnounced(reason));
    if service.ingress.is_empty() {
        return not(NoIpAllocated);
    }
    let Some(pool) = pool_of(config, &service.ingress) else {
        return not(IpNotAllowed);
    };
    if pool.bgp_advertisements.is_empty() {
        return None;
    }
    let for_node: Vec<&BgpAdvertisement> = pool
        .bgp_advertisements
        .iter()
        .filter_map(|name| config.bgp_advertisements.get(name))
        .filter(|ad| ad.selects_node(&node.labels))
        .collect();
    if for_node.is_empty() {
        return not(NotOwner);
    }
    let matching: Vec<&BgpAdvertisement> = for_node
        .into_iter()
        .filter(|ad| crate::config::any_matches(&ad.service_selectors, &service.labels))
        .collect();
    if matching.is_empty() {
        return not(NoMatchingAdvertisement);
    }
    if node.network_unavailable {
        return not(NodeNetworkUnavailable);
    }
    if node.excluded && !inputs.ignore_exclude_label {
        return not(NodeLabeledExcludeBalancers);
    }
    let endpoints = inputs.endpoints.get(&service.key);
    if service.traffic_policy_local {
        if !endpoints.is_some_and(|e| e.on_node(&node.name)) {
            return not(NoLocalEndpoints);
        }
    } else if !endpoints.is_some_and(|e| e.any) {
        return not(NoEndpoints);
    }
    let mut prefixes = BTreeSet::new();
    let mut peers = BTreeSet::new();
    for ip in &service.ingress {
        for ad in &matching {
            let prefix = aggregate(*ip, ad);
            prefixes.insert(prefix);
            for session in sessions.iter_mut() {
                if !ad.reaches_peer(&session.peer.name) || !session.carries(&prefix) {
                    continue;
                }
                let ibgp = session.peer.is_ibgp();
                let attributes = session.announcements.entry(prefix).or_default();
                if ibgp {
                    // The loader rejects advertisements that could give one prefix two
                    // LOCAL_PREFs; should one slip through, the higher wins, deterministically.
                    attributes.local_pref = attributes.local_pref.max(ad.local_pref);
                }
                attributes
                    .communities
                    .extend(ad.communities.iter().cloned());
                peers.insert(session.peer.name.clone());
            }
        }
    }
    if peers.is_empty() {
        return not(NoPeers);
    }
    Some(ServiceBgp::Announced { prefixes, peers })
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
