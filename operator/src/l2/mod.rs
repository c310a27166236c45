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

pub mod announcer;
pub mod interfaces;
pub mod members;
pub mod responder;
pub mod socket;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bgp::pool_of;
use crate::cluster::{LbService, NodeView, ServiceKey, ServiceScope, ServingEndpoints};
use crate::config::{Config, L2Advertisement, any_matches};

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
/// NotReady. `None` until gossip has settled: a speaker that does not yet know who else is
/// alive claims nothing.
pub fn live_members(nodes: &[NodeView], liveness: &members::Liveness) -> Option<Vec<NodeView>> {
    if !liveness.settled {
        return None;
    }
    Some(
        nodes
            .iter()
            .filter(|n| liveness.alive.contains(&n.name) && !n.not_ready)
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

/// The Services `inputs.node` answers for, assuming `inputs.members` are alive.
pub fn announcements(config: &Config, inputs: &L2Inputs<'_>) -> Vec<L2Announcement> {
    let mut out = Vec::new();
    for service in inputs.services.iter().filter(|s| s.in_scope(inputs.scope)) {
        let Some(first) = service.ingress.first() else {
            continue;
        };
        let Some(pool) = pool_of(config, &service.ingress) else {
            continue;
        };
        let Some(endpoints) = inputs.endpoints.get(&service.key).filter(|e| e.any) else {
            continue;
        };
        let ads: Vec<&L2Advertisement> = pool
            .l2_advertisements
            .iter()
            .filter_map(|n| config.l2_advertisements.get(n))
            .filter(|ad| any_matches(&ad.service_selectors, &service.labels))
            .collect();
        if ads.is_empty()
            || (service.sharing_key.is_some()
                && ads.iter().any(|a| !a.service_selectors.is_empty()))
        {
            continue;
        }
        let candidates: Vec<(&str, u32)> = inputs
            .members
            .iter()
            .filter(|n| !n.network_unavailable && (!n.excluded || inputs.ignore_exclude_label))
            .filter(|n| ads.iter().any(|a| a.selects_node(&n.labels)))
            .filter(|n| !service.traffic_policy_local || endpoints.on_node(&n.name))
            .map(|n| {
                let score = ads
                    .iter()
                    .flat_map(|a| &a.preferred_nodes)
                    .filter(|p| p.selector.matches(&n.labels))
                    .map(|p| p.weight)
                    .sum();
                (n.name.as_str(), score)
            })
            .collect();
        if elect(&candidates, *first) != Some(inputs.node) {
            continue;
        }
        let Some(me) = inputs.members.iter().find(|n| n.name == inputs.node) else {
            continue;
        };
        let mine: Vec<&&L2Advertisement> =
            ads.iter().filter(|a| a.selects_node(&me.labels)).collect();
        let interfaces = if mine.iter().any(|a| a.interfaces.is_empty()) {
            BTreeSet::new()
        } else {
            mine.iter()
                .flat_map(|a| a.interfaces.iter().cloned())
                .collect()
        };
        out.push(L2Announcement {
            service: service.key.clone(),
            ips: service.ingress.clone(),
            interfaces,
        });
    }
    out
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
    fn members_are_the_gossip_alive_nodes_that_are_not_not_ready() {
        let mut nodes = vec![
            NodeView::named("n1"),
            NodeView::named("n2"),
            NodeView::named("n3"),
        ];
        nodes[1].not_ready = true;
        let mut liveness = members::Liveness {
            alive: ["n1", "n2", "n4"].iter().map(|n| n.to_string()).collect(),
            settled: false,
        };
        assert_eq!(live_members(&nodes, &liveness), None);
        liveness.settled = true;
        let live = live_members(&nodes, &liveness).unwrap();
        let names: Vec<&str> = live.iter().map(|n| n.name.as_str()).collect();
        // n2 is NotReady, n3 is dead in gossip, n4 has no Node.
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
