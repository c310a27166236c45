//! `ferrolb explain service`: why a Service has the IP it has (or none), and what every node
//! does with it, computed by the same functions the controller and the speakers run.
//!
//! - Pools: the pool chosen and how (kept, requested IPs, requested pool, automatic), and for
//!   every other pool why it was not used.
//! - Per node: BGP (to which peers, with which communities and local preference, or MetalLB's
//!   reason word for not announcing; peers whose nodeSelectors leave the node out) and layer 2
//!   (the elected node answers; the others say why not).
//!
//! Every node in the input counts as alive for layer-2 election unless its Ready condition is
//! not True (gossip cannot be seen from outside); the reported owner is who wins then.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use crate::alloc::{self, AllocService};
use crate::bgp::{self, IntentInputs, NotAnnounced, ServiceBgp};
use crate::config::{ClusterObjects, Config};
use crate::dry_run;
use crate::l2::{self, L2Inputs};
use crate::views::{LbService, NodeView, ServiceKey, ServiceScope, ServingEndpoints};

/// The whole answer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Explanation {
    /// `namespace/name`.
    pub service: String,
    /// The ingress IPs the Service has, or would get from the controller.
    pub ips: Vec<IpAddr>,
    /// The pool they come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// How the pool was picked.
    pub how: String,
    /// Why the Service has no IP (`<pending>`), when that is so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// The `allow-shared-ip` key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sharing_key: Option<String>,
    /// Every pool, chosen or not and why.
    pub pools: Vec<PoolVerdict>,
    /// Every node.
    pub nodes: Vec<NodeVerdict>,
    /// What was assumed.
    pub warnings: Vec<String>,
}

/// One pool's part.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PoolVerdict {
    /// The pool.
    pub name: String,
    /// Whether the Service's IPs come from it.
    pub chosen: bool,
    /// Why not, when not chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One node's part.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NodeVerdict {
    /// The node.
    pub node: String,
    /// BGP.
    pub bgp: BgpVerdict,
    /// Layer 2.
    pub l2: L2Verdict,
}

/// What a node does over BGP.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BgpVerdict {
    /// Whether the node announces the Service.
    pub announced: bool,
    /// MetalLB's reason word when it does not (`noLocalEndpoints`, …); absent when the pool
    /// has no BGPAdvertisement at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The reason in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Peers receiving it, with what.
    pub peers: Vec<PeerAnnouncement>,
    /// BGPPeers whose nodeSelectors leave this node out.
    pub peers_not_on_node: Vec<String>,
}

/// One peer receiving a Service's prefixes.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PeerAnnouncement {
    /// The BGPPeer.
    pub peer: String,
    /// Its address or interface.
    pub address: String,
    /// The prefixes it gets.
    pub prefixes: Vec<String>,
    /// Communities attached.
    pub communities: Vec<String>,
    /// LOCAL_PREF (iBGP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
}

/// What a node does over layer 2.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct L2Verdict {
    /// Whether the node answers ARP/NDP for the IPs.
    pub answers: bool,
    /// Interfaces it answers on (empty: all suitable).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Why not (reason word and, for `notElected`, the owner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<l2::NotAnswered>,
    /// The reason in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Why [`explain`] has no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExplainError {
    /// No such Service in the input.
    #[error("Service {0} is not in the input")]
    NotFound(ServiceKey),
    /// The Service is not of type LoadBalancer.
    #[error("Service {0} is not of type LoadBalancer: ferrolb gives it no IP")]
    NotLoadBalancer(ServiceKey),
}

fn not_announced_text(reason: NotAnnounced) -> &'static str {
    match reason {
        NotAnnounced::NoIpAllocated => "the Service has no IP",
        NotAnnounced::IpNotAllowed => "its IPs are not in one configured pool",
        NotAnnounced::NotOwner => "no BGPAdvertisement of its pool selects this node",
        NotAnnounced::NoMatchingAdvertisement => {
            "no BGPAdvertisement selecting this node selects the Service (serviceSelectors)"
        }
        NotAnnounced::NodeNetworkUnavailable => "the node's NetworkUnavailable condition is True",
        NotAnnounced::NodeOutOfService => {
            "the node is tainted node.kubernetes.io/out-of-service (shut down)"
        }
        NotAnnounced::NodeLabeledExcludeBalancers => {
            "the node is labelled node.kubernetes.io/exclude-from-external-load-balancers"
        }
        NotAnnounced::NoLocalEndpoints => {
            "externalTrafficPolicy is Local and the node has no ready endpoint"
        }
        NotAnnounced::ProxyNotReady => {
            "externalTrafficPolicy is Local and kube-proxy on the node does not forward to its new endpoints yet"
        }
        NotAnnounced::NoEndpoints => "the Service has no ready endpoint",
        NotAnnounced::NoPeers => {
            "no session of this node receives its prefixes (advertisement peers or address family)"
        }
    }
}

fn word<T: Serialize>(value: &T) -> Option<String> {
    match serde_json::to_value(value).ok()? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Object(map) => map.get("reason")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Explains `key` among `objects` under `config`, with `endpoints` saying where each
/// Service's endpoints serve (from EndpointSlices or core/v1 Endpoints).
pub(crate) fn explain(
    config: &Config,
    objects: &ClusterObjects,
    endpoints: &BTreeMap<ServiceKey, ServingEndpoints>,
    key: &ServiceKey,
    scope: &ServiceScope,
) -> Result<Explanation, ExplainError> {
    let Some(object) = objects.services.iter().find(|s| ServiceKey::of(s) == *key) else {
        return Err(ExplainError::NotFound(key.clone()));
    };
    let mut wanted = AllocService::from_service(object);
    wanted.assume_cluster_families();
    if !wanted.is_load_balancer {
        return Err(ExplainError::NotLoadBalancer(key.clone()));
    }
    let mut warnings = Vec::new();
    if !wanted.in_scope(scope) {
        warnings.push(format!(
            "the Service's loadBalancerClass {:?} is not the one handled ({:?}): ferrolb leaves it alone",
            wanted.load_balancer_class, scope.load_balancer_class
        ));
    }
    let decision = dry_run::allocate_explaining(config, objects, scope, Some(key)).remove(key);
    let (ips, pool, pending, choice) = match decision {
        Some(d) => (d.ingress, d.pool, d.pending, d.choice.map(|c| *c)),
        None => (Vec::new(), None, None, None),
    };
    let choice = choice.unwrap_or_default();
    if wanted.ingress.is_empty() && !ips.is_empty() {
        warnings.push(
            "the Service has no IP in the input: shown is what the controller would assign"
                .to_string(),
        );
    }
    let how = match (&pool, choice.how) {
        (Some(pool), Some(how @ alloc::How::RequestedPool)) => format!("{how}: {pool}"),
        (Some(_), Some(how)) => how.to_string(),
        _ => "no pool".to_string(),
    };
    let pools = config
        .pools
        .values()
        .map(|p| {
            let chosen = pool.as_deref() == Some(p.name.as_str());
            PoolVerdict {
                name: p.name.clone(),
                chosen,
                reason: (!chosen).then(|| {
                    choice.refused.get(&p.name).cloned().unwrap_or_else(|| {
                        "the allocator gave no reason (the Service was not decided)".to_string()
                    })
                }),
            }
        })
        .collect();

    // What the nodes see: the Service with its (would-be) IPs, endpoints as observed or
    // assumed, every listed node alive unless NotReady.
    let mut nodes: Vec<NodeView> = objects.nodes.iter().map(NodeView::from_node).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    if nodes.is_empty() {
        warnings.push(
            "no Node objects in the input: nothing to say per node (add Nodes, or ask the cluster)"
                .to_string(),
        );
    }
    let mut service = LbService::from_service(object);
    service.ingress.clone_from(&ips);
    let mut endpoints = endpoints.clone();
    if !endpoints.contains_key(key) {
        warnings.push(format!(
            "no endpoints for Service {key}: assuming ready endpoints on every node"
        ));
        endpoints.insert(
            key.clone(),
            ServingEndpoints {
                nodes: nodes.iter().map(|n| n.name.clone()).collect(),
                ready: nodes.iter().map(|n| n.name.clone()).collect(),
                any: true,
            },
        );
    }
    let alive: Vec<NodeView> = nodes
        .iter()
        .filter(|n| !n.not_ready && !n.out_of_service)
        .cloned()
        .collect();
    let services = std::slice::from_ref(&service);
    let node_verdicts = nodes
        .iter()
        .map(|node| {
            let intent = bgp::intent(
                config,
                &IntentInputs {
                    node,
                    services,
                    endpoints: &endpoints,
                    scope,
                    ignore_exclude_label: false,
                    held: &BTreeSet::new(),
                },
            );
            let bgp = bgp_verdict(config, &intent, key, node);
            let l2 = match l2::verdict(
                config,
                &L2Inputs {
                    node: &node.name,
                    members: &alive,
                    services,
                    endpoints: &endpoints,
                    scope,
                    ignore_exclude_label: false,
                },
                &service,
            ) {
                Ok(interfaces) => L2Verdict {
                    answers: true,
                    interfaces: interfaces.into_iter().collect(),
                    reason: None,
                    detail: None,
                },
                Err(why) => L2Verdict {
                    answers: false,
                    interfaces: Vec::new(),
                    detail: Some(why.to_string()),
                    reason: Some(why),
                },
            };
            NodeVerdict {
                node: node.name.clone(),
                bgp,
                l2,
            }
        })
        .collect();
    Ok(Explanation {
        service: key.to_string(),
        ips,
        pool,
        how,
        pending,
        sharing_key: wanted.sharing_key.clone(),
        pools,
        nodes: node_verdicts,
        warnings,
    })
}

fn bgp_verdict(
    config: &Config,
    intent: &bgp::NodeIntent,
    key: &ServiceKey,
    node: &NodeView,
) -> BgpVerdict {
    let peers_not_on_node = config
        .peers
        .values()
        .filter(|p| !p.selects_node(&node.labels))
        .map(|p| p.name.clone())
        .collect();
    let (announced, reason, detail, peers) = match intent.services.get(key) {
        Some(ServiceBgp::Announced { prefixes, .. }) => {
            let peers = intent
                .sessions
                .iter()
                .filter_map(|s| {
                    let mine: BTreeMap<_, _> = s
                        .announcements
                        .iter()
                        .filter(|(p, _)| prefixes.contains(*p))
                        .collect();
                    let first = mine.values().next()?;
                    Some(PeerAnnouncement {
                        peer: s.peer.name.clone(),
                        address: s.peer.endpoint.to_string(),
                        prefixes: mine.keys().map(ToString::to_string).collect(),
                        communities: first.communities.iter().map(ToString::to_string).collect(),
                        local_pref: first.local_pref,
                    })
                })
                .collect();
            (true, None, None, peers)
        }
        Some(ServiceBgp::NotAnnounced(why)) => (
            false,
            word(why),
            Some(not_announced_text(*why).to_string()),
            Vec::new(),
        ),
        None => (
            false,
            None,
            Some("its pool has no BGPAdvertisement".to_string()),
            Vec::new(),
        ),
    };
    BgpVerdict {
        announced,
        reason,
        detail,
        peers,
        peers_not_on_node,
    }
}

impl Explanation {
    /// For people.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Service {}", self.service);
        if self.ips.is_empty() {
            let _ = writeln!(
                out,
                "  IPs:     none (<pending>): {}",
                self.pending.as_deref().unwrap_or("no pool serves it")
            );
        } else {
            let ips: Vec<String> = self.ips.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "  IPs:     {}", ips.join(", "));
            if let Some(pending) = &self.pending {
                let _ = writeln!(out, "  note:    {pending}");
            }
        }
        if let Some(pool) = &self.pool {
            let _ = writeln!(out, "  pool:    {pool} ({})", self.how);
        }
        if let Some(key) = &self.sharing_key {
            let _ = writeln!(out, "  sharing: metallb.io/allow-shared-ip {key}");
        }
        let others: Vec<&PoolVerdict> = self.pools.iter().filter(|p| !p.chosen).collect();
        if !others.is_empty() {
            let _ = writeln!(out, "  other pools:");
            for p in others {
                let _ = writeln!(
                    out,
                    "    {}: {}",
                    p.name,
                    p.reason.as_deref().unwrap_or_default()
                );
            }
        }
        if !self.nodes.is_empty() {
            let _ = writeln!(out, "Nodes:");
        }
        for n in &self.nodes {
            let _ = writeln!(out, "  {}", n.node);
            if n.bgp.announced {
                for p in &n.bgp.peers {
                    let mut what = String::new();
                    if !p.communities.is_empty() {
                        let _ = write!(what, " communities {}", p.communities.join(" "));
                    }
                    if let Some(lp) = p.local_pref {
                        let _ = write!(what, " localPref {lp}");
                    }
                    let _ = writeln!(
                        out,
                        "    BGP: {} to {} ({}){what}",
                        p.prefixes.join(", "),
                        p.peer,
                        p.address
                    );
                }
            } else {
                let _ = writeln!(
                    out,
                    "    BGP: not announced: {}{}",
                    n.bgp.detail.as_deref().unwrap_or_default(),
                    n.bgp
                        .reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
            }
            if !n.bgp.peers_not_on_node.is_empty() {
                let _ = writeln!(
                    out,
                    "         peers not on this node (nodeSelectors): {}",
                    n.bgp.peers_not_on_node.join(", ")
                );
            }
            if n.l2.answers {
                let on = if n.l2.interfaces.is_empty() {
                    "every suitable interface".to_string()
                } else {
                    n.l2.interfaces.join(", ")
                };
                let _ = writeln!(out, "    L2:  answers ARP/NDP (elected) on {on}");
            } else {
                let _ = writeln!(
                    out,
                    "    L2:  does not answer: {}",
                    n.l2.detail.as_deref().unwrap_or_default()
                );
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "note: {w}");
        }
        out
    }
}

#[cfg(test)]
mod tests;
