//! Layer-2 announcing: which node answers ARP/NDP for which IP.
//!
//! [`elect`] is MetalLB's rule, so mixed or upgraded clusters agree on owners: among the
//! eligible live nodes, the highest preference score wins, ties broken by
//! `sha256(node + "#" + ip)` compared bytewise, smallest first, where `ip` is the Service's
//! first ingress IP (both IPs of a dual-stack Service share one owner).
//!
//! [`wire`] reads and writes the packets an owner answers and sends: ARP and IPv6 neighbour
//! discovery; [`interfaces`] decides which interfaces answer; [`announcer`] what a responder
//! answers and when it announces.

pub(crate) mod announcer;
pub(crate) mod interfaces;
pub mod isolation;
pub mod members;
pub(crate) mod responder;
pub(crate) mod socket;
pub(crate) mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, L2Advertisement, any_matches};
use crate::views::{LbService, NodeView, ServiceKey, ServiceScope, ServingEndpoints};

/// Everything [`announcements`] reads besides the configuration.
#[derive(Clone, Copy, Debug)]
pub struct L2Inputs<'a> {
    /// The node asking.
    pub node: &'a str,
    /// Live nodes that run a speaker (the node asking among them).
    pub members: &'a [NodeView],
    /// All Services.
    pub services: &'a [LbService],
    /// Serving endpoints per Service.
    pub endpoints: &'a BTreeMap<ServiceKey, ServingEndpoints>,
    /// Which Services this instance handles.
    pub scope: &'a ServiceScope,
    /// Count nodes labelled for exclusion anyway.
    pub ignore_exclude_label: bool,
}

/// One Service this node answers for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct L2Announcement {
    /// The Service.
    pub service: ServiceKey,
    /// Its ingress IPs.
    pub ips: Vec<IpAddr>,
    /// Interfaces to answer on; empty means every suitable one.
    pub interfaces: BTreeSet<String>,
}

/// The nodes that count as alive for election: those gossip holds alive whose Node is not
/// NotReady. `None` until gossip has settled, and while this speaker is cut off
/// ([`isolation`]): a speaker that does not know who else is alive claims nothing.
pub fn live_members(nodes: &[NodeView], liveness: &members::Liveness) -> Option<Vec<NodeView>> {
    if !liveness.settled || liveness.isolated {
        return None;
    }
    Some(
        nodes
            .iter()
            .filter(|n| liveness.alive.contains(&n.name) && !n.not_ready && !n.out_of_service)
            .cloned()
            .collect(),
    )
}

/// The owner among `candidates` (node name, preference score) for a Service whose first
/// ingress IP is `ip`.
pub fn elect<'a>(candidates: &[(&'a str, u32)], ip: IpAddr) -> Option<&'a str> {
    candidates
        .iter()
        .map(|(node, score)| {
            let hash = Sha256::digest(format!("{node}#{ip}").as_bytes());
            (std::cmp::Reverse(*score), hash, *node)
        })
        .min()
        .map(|(_, _, node)| node)
}

/// Why a node does not answer for a Service's IPs (MetalLB's reason words where it has one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum NotAnswered {
    /// No ingress IP yet.
    NoIpAllocated,
    /// The ingress IPs are not all in one configured pool.
    IpNotAllowed,
    /// The pool has no L2Advertisement.
    NoL2Advertisement,
    /// No L2Advertisement of the pool selects the Service (serviceSelectors; a shared IP is
    /// never matched by serviceSelectors).
    NoMatchingAdvertisement,
    /// No serving endpoint anywhere.
    NoEndpoints,
    /// The node is not among the live speakers (gossip, or its Ready condition).
    NodeNotAlive,
    /// The node's `NetworkUnavailable` condition is true.
    NodeNetworkUnavailable,
    /// The node carries the exclusion label.
    NodeLabeledExcludeBalancers,
    /// No L2Advertisement's nodeSelectors select the node.
    NodeNotSelected,
    /// `externalTrafficPolicy: Local` and no serving endpoint on this node.
    NoLocalEndpoints,
    /// Eligible, but another node is elected.
    NotElected {
        /// The elected node.
        owner: String,
    },
}

impl std::fmt::Display for NotAnswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotAnswered::NoIpAllocated => write!(f, "the Service has no IP"),
            NotAnswered::IpNotAllowed => write!(f, "its IPs are not in one configured pool"),
            NotAnswered::NoL2Advertisement => write!(f, "no L2Advertisement names its pool"),
            NotAnswered::NoMatchingAdvertisement => write!(
                f,
                "no L2Advertisement of its pool selects the Service (serviceSelectors)"
            ),
            NotAnswered::NoEndpoints => write!(f, "the Service has no ready endpoint"),
            NotAnswered::NodeNotAlive => {
                write!(f, "the node is not alive (gossip, or Ready is not True)")
            }
            NotAnswered::NodeNetworkUnavailable => {
                write!(f, "the node's NetworkUnavailable condition is True")
            }
            NotAnswered::NodeLabeledExcludeBalancers => write!(
                f,
                "the node is labelled node.kubernetes.io/exclude-from-external-load-balancers"
            ),
            NotAnswered::NodeNotSelected => write!(
                f,
                "no L2Advertisement of its pool selects the node (nodeSelectors)"
            ),
            NotAnswered::NoLocalEndpoints => write!(
                f,
                "externalTrafficPolicy is Local and the node has no ready endpoint"
            ),
            NotAnswered::NotElected { owner } => write!(f, "node {owner} is elected"),
        }
    }
}

/// Whether `inputs.node` answers for `service`, on which interfaces (empty: all), or why not.
pub fn verdict(
    config: &Config,
    inputs: &L2Inputs<'_>,
    service: &LbService,
) -> Result<BTreeSet<String>, NotAnswered> {
    let Some(first) = service.ingress.first() else {
        return Err(NotAnswered::NoIpAllocated);
    };
    let Some(pool) = config.pool_of(&service.ingress) else {
        return Err(NotAnswered::IpNotAllowed);
    };
    if pool.l2_advertisements.is_empty() {
        return Err(NotAnswered::NoL2Advertisement);
    }
    let ads: Vec<&L2Advertisement> = pool
        .l2_advertisements
        .iter()
        .filter_map(|n| config.l2_advertisements.get(n))
        .filter(|ad| any_matches(&ad.service_selectors, &service.labels))
        .collect();
    if ads.is_empty()
        || (service.sharing_key.is_some() && ads.iter().any(|a| !a.service_selectors.is_empty()))
    {
        return Err(NotAnswered::NoMatchingAdvertisement);
    }
    let Some(endpoints) = inputs.endpoints.get(&service.key).filter(|e| e.any) else {
        return Err(NotAnswered::NoEndpoints);
    };
    let eligible = |n: &NodeView| -> Result<u32, NotAnswered> {
        if n.network_unavailable {
            return Err(NotAnswered::NodeNetworkUnavailable);
        }
        if n.excluded && !inputs.ignore_exclude_label {
            return Err(NotAnswered::NodeLabeledExcludeBalancers);
        }
        if !ads.iter().any(|a| a.selects_node(&n.labels)) {
            return Err(NotAnswered::NodeNotSelected);
        }
        if service.traffic_policy_local && !endpoints.on_node(&n.name) {
            return Err(NotAnswered::NoLocalEndpoints);
        }
        Ok(ads
            .iter()
            .flat_map(|a| &a.preferred_nodes)
            .filter(|p| p.selector.matches(&n.labels))
            .map(|p| p.weight)
            .sum())
    };
    let Some(me) = inputs.members.iter().find(|n| n.name == inputs.node) else {
        return Err(NotAnswered::NodeNotAlive);
    };
    eligible(me)?;
    let candidates: Vec<(&str, u32)> = inputs
        .members
        .iter()
        .filter_map(|n| eligible(n).ok().map(|score| (n.name.as_str(), score)))
        .collect();
    match elect(&candidates, *first) {
        Some(owner) if owner == inputs.node => {}
        Some(owner) => {
            return Err(NotAnswered::NotElected {
                owner: owner.to_string(),
            });
        }
        None => return Err(NotAnswered::NodeNotAlive),
    }
    let mine: Vec<&&L2Advertisement> = ads.iter().filter(|a| a.selects_node(&me.labels)).collect();
    Ok(if mine.iter().any(|a| a.interfaces.is_empty()) {
        BTreeSet::new()
    } else {
        mine.iter()
            .flat_map(|a| a.interfaces.iter().cloned())
            .collect()
    })
}

/// An address as (family, number), for range tests that cost two comparisons.
fn number(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(a) => (4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

/// The Services `inputs.node` answers for, assuming `inputs.members` are alive.
pub fn announcements(config: &Config, inputs: &L2Inputs<'_>) -> Vec<L2Announcement> {
    // Only a Service whose first IP lies in a pool with an L2Advertisement can be answered
    // for (the verdict's first tests): the others, thousands of BGP Services, cost one
    // comparison each, and a BGP-only configuration none.
    let answerable: Vec<(u8, u128, u128)> = config
        .pools
        .values()
        .filter(|p| !p.l2_advertisements.is_empty())
        .flat_map(|p| p.cidrs())
        .map(|c| {
            let (family, low) = number(c.network());
            (family, low, number(c.broadcast()).1)
        })
        .collect();
    if answerable.is_empty() {
        return Vec::new();
    }
    inputs
        .services
        .iter()
        .filter(|s| {
            s.ingress.first().is_some_and(|ip| {
                let (family, n) = number(*ip);
                answerable
                    .iter()
                    .any(|(f, low, high)| *f == family && (*low..=*high).contains(&n))
            })
        })
        .filter(|s| s.in_scope(inputs.scope))
        .filter_map(|service| {
            let interfaces = verdict(config, inputs, service).ok()?;
            Some(L2Announcement {
                service: service.key.clone(),
                ips: service.ingress.clone(),
                interfaces,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_hash_wins_among_equal_preferences() {
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let nodes = [("node-a", 0), ("node-b", 0), ("node-c", 0)];
        let winner = elect(&nodes, ip).unwrap();
        let smallest = nodes
            .iter()
            .map(|(n, _)| (Sha256::digest(format!("{n}#{ip}").as_bytes()), *n))
            .min()
            .unwrap()
            .1;
        assert_eq!(winner, smallest);
        // Removing a node that is not the owner never moves the IP.
        let gone = nodes.iter().find(|(n, _)| *n != winner).unwrap().0;
        let rest: Vec<(&str, u32)> = nodes.iter().copied().filter(|(n, _)| *n != gone).collect();
        assert_eq!(rest.len(), 2);
        assert_eq!(elect(&rest, ip), Some(winner));
    }

    #[test]
    fn members_are_the_gossip_alive_nodes_that_are_ready_and_in_service() {
        let mut nodes = vec![
            NodeView::named("n1"),
            NodeView::named("n2"),
            NodeView::named("n3"),
        ];
        nodes[1].not_ready = true;
        nodes.push(NodeView::named("n5"));
        nodes[3].out_of_service = true;
        let mut liveness = members::Liveness {
            alive: ["n1", "n2", "n4", "n5"]
                .iter()
                .map(|n| n.to_string())
                .collect(),
            settled: false,
            isolated: false,
            rejoined: 0,
        };
        assert_eq!(live_members(&nodes, &liveness), None);
        liveness.settled = true;
        liveness.isolated = true;
        assert_eq!(live_members(&nodes, &liveness), None);
        liveness.isolated = false;
        let live = live_members(&nodes, &liveness).unwrap();
        let names: Vec<&str> = live.iter().map(|n| n.name.as_str()).collect();
        // n2 is NotReady, n3 is dead in gossip, n4 has no Node, n5 is out of service (its
        // speaker may still gossip: a node shut down without a drain is tainted by hand).
        assert_eq!(names, ["n1"]);
    }

    #[test]
    fn preference_beats_the_hash() {
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let loser = elect(&[("node-a", 0), ("node-b", 0)], ip).unwrap();
        let other = if loser == "node-a" {
            "node-b"
        } else {
            "node-a"
        };
        let boosted = [(loser, 0), (other, 10)];
        assert_eq!(elect(&boosted, ip), Some(other));
    }
}
