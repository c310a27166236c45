//! The `router bgp` blocks of a delta: routers added, removed or changed, their neighbours'
//! session lines and each address family's networks and activations.

use super::*;
use crate::frr::commands::{
    activation_lines, attribute_removals, attribute_sets, neighbor_lines, remote_as_line,
    router_body, router_line,
};

pub(super) fn routers(
    old: &FrrConfig,
    new: &FrrConfig,
    out: &mut Vec<String>,
    delta: &mut FrrDelta,
) -> Result<(), NeedsReload> {
    let old_by_vrf: BTreeMap<Option<&str>, &Router> =
        old.routers.iter().map(|r| (r.vrf.as_deref(), r)).collect();
    let new_by_vrf: BTreeMap<Option<&str>, &Router> =
        new.routers.iter().map(|r| (r.vrf.as_deref(), r)).collect();
    // Routers that go, or come back with another AS: VRFs first, the default one last.
    let mut removed: Vec<&Router> = old
        .routers
        .iter()
        .filter(|r| {
            new_by_vrf
                .get(&r.vrf.as_deref())
                .is_none_or(|n| n.asn != r.asn)
        })
        .collect();
    removed.sort_by_key(|r| r.vrf.is_none());
    let vrfs_stay = new.routers.iter().any(|r| r.vrf.is_some());
    for router in &removed {
        if router.vrf.is_none() && vrfs_stay {
            return Err(NeedsReload(format!(
                "the default router bgp {} would go while VRF routers stay",
                router.asn
            )));
        }
        out.push(format!("no {}", router_line(router)));
        delta.networks_removed += networks(router).count();
    }
    // `new.routers` lists the default router first, as FRR needs.
    for router in &new.routers {
        match old_by_vrf.get(&router.vrf.as_deref()) {
            Some(was) if was.asn == router.asn => {
                let mut lines = Vec::new();
                change_router(was, router, &mut lines, delta);
                if !lines.is_empty() {
                    out.push(router_line(router));
                    out.append(&mut lines);
                    out.push("exit".into());
                }
            }
            _ => {
                out.push(router_line(router));
                router_body(router, out);
                out.push("exit".into());
                delta.networks_added += networks(router).count();
            }
        }
    }
    Ok(())
}

fn networks(router: &Router) -> impl Iterator<Item = &IpNet> {
    [&router.ipv4, &router.ipv6]
        .into_iter()
        .flatten()
        .flat_map(|af| af.networks.iter())
}

fn change_router(old: &Router, new: &Router, out: &mut Vec<String>, delta: &mut FrrDelta) {
    if old.router_id != new.router_id {
        out.push(match new.router_id {
            Some(id) => format!(" bgp router-id {id}"),
            None => " no bgp router-id".into(),
        });
    }
    if old.coalesce_time != new.coalesce_time {
        out.push(format!(" coalesce-time {}", new.coalesce_time));
    }
    let old_neighbors: BTreeMap<&str, &Neighbor> =
        old.neighbors.iter().map(|n| (n.peer.as_str(), n)).collect();
    let new_neighbors: BTreeMap<&str, &Neighbor> =
        new.neighbors.iter().map(|n| (n.peer.as_str(), n)).collect();
    // A neighbour that changes between interface and address is a new neighbour.
    let replaced = |n: &Neighbor| {
        new_neighbors
            .get(n.peer.as_str())
            .is_none_or(|m| m.interface != n.interface)
    };
    for n in old.neighbors.iter().filter(|n| replaced(n)) {
        out.push(format!(" no neighbor {}", n.peer));
    }
    let mut fresh: BTreeSet<&str> = BTreeSet::new();
    for n in &new.neighbors {
        match old_neighbors.get(n.peer.as_str()) {
            Some(was) if !replaced(was) => {
                if *was != n {
                    out.extend(attribute_removals(was, n));
                    if was.remote_as != n.remote_as {
                        out.push(remote_as_line(n));
                    }
                    out.extend(attribute_sets(Some(was), n));
                }
            }
            _ => {
                out.extend(neighbor_lines(n));
                fresh.insert(n.peer.as_str());
            }
        }
    }
    for (name, was, is) in [
        ("ipv4", &old.ipv4, &new.ipv4),
        ("ipv6", &old.ipv6, &new.ipv6),
    ] {
        let mut lines = Vec::new();
        change_family(
            was.as_ref(),
            is.as_ref(),
            &fresh,
            &new_neighbors,
            &mut lines,
            delta,
        );
        if !lines.is_empty() {
            out.push(format!(" address-family {name} unicast"));
            out.append(&mut lines);
            out.push(" exit-address-family".into());
        }
    }
}

fn change_family(
    old: Option<&AddressFamily>,
    new: Option<&AddressFamily>,
    fresh: &BTreeSet<&str>,
    neighbors: &BTreeMap<&str, &Neighbor>,
    out: &mut Vec<String>,
    delta: &mut FrrDelta,
) {
    let empty = AddressFamily {
        networks: Vec::new(),
        neighbors: Vec::new(),
    };
    let old = old.unwrap_or(&empty);
    let new = new.unwrap_or(&empty);
    let old_policies: BTreeMap<&str, &NeighborPolicy> =
        old.neighbors.iter().map(|p| (p.peer.as_str(), p)).collect();
    let new_peers: BTreeSet<&str> = new.neighbors.iter().map(|p| p.peer.as_str()).collect();
    // Both lists are in prefix order: one merge finds what comes and what goes.
    let (mut added, mut removed): (Vec<&IpNet>, Vec<&IpNet>) = (Vec::new(), Vec::new());
    let (mut a, mut b) = (
        old.networks.iter().peekable(),
        new.networks.iter().peekable(),
    );
    loop {
        let step = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
        };
        match step {
            Ordering::Equal => {
                a.next();
                b.next();
            }
            Ordering::Less => removed.extend(a.next()),
            Ordering::Greater => added.extend(b.next()),
        }
    }
    delta.networks_added += added.len();
    delta.networks_removed += removed.len();
    out.extend(removed.iter().map(|n| format!("  no network {n}")));
    for policy in &new.neighbors {
        let known = !fresh.contains(policy.peer.as_str());
        match old_policies.get(policy.peer.as_str()) {
            Some(was) if known => {
                let p = &policy.peer;
                if was.route_map_in != policy.route_map_in {
                    out.push(format!(
                        "  neighbor {p} route-map {} in",
                        policy.route_map_in
                    ));
                }
                if was.route_map_out != policy.route_map_out {
                    out.push(format!(
                        "  neighbor {p} route-map {} out",
                        policy.route_map_out
                    ));
                }
            }
            _ => out.extend(activation_lines(policy)),
        }
    }
    for policy in &old.neighbors {
        let peer = policy.peer.as_str();
        let still_there = neighbors.contains_key(peer) && !fresh.contains(peer);
        if still_there && !new_peers.contains(peer) {
            out.push(format!(
                "  no neighbor {peer} route-map {} in",
                policy.route_map_in
            ));
            out.push(format!(
                "  no neighbor {peer} route-map {} out",
                policy.route_map_out
            ));
            out.push(format!("  no neighbor {peer} activate"));
        }
    }
    out.extend(added.iter().map(|n| format!("  network {n}")));
}
