//! The commands that turn a running FRR configuration into another, computed from the two
//! models (never from text), so applying a change costs a few lines instead of a reload.
//!
//! [`diff`] is pure. Its script is typed into `configure terminal` as it stands and is built
//! in three phases, so that nothing is ever referenced before it exists nor removed while in use:
//! 1. additions that others depend on: `nht` lines, BFD profiles (new or edited in place),
//!    prefix-list entries, new route-maps;
//! 2. the `router bgp` blocks: routers and neighbours removed, then added or changed
//!    (attributes removed before attributes set), then each address family (networks,
//!    activation, route-maps re-pointed);
//! 3. removals of what nothing uses any more: route-maps, prefix-list entries and lists,
//!    BFD profiles, `nht` lines.
//!
//! A route-map is never edited: the model names route-maps after their contents, so a new
//! policy is a new route-map and the neighbour is re-pointed, which FRR applies at once. A
//! prefix-list edit does not reach routes already announced until FRR's route-map delay timer
//! fires (5 s), so when an edit changes the attributes or the fate of a network that is
//! announced before and after, [`FrrDelta::refresh`] holds the `clear bgp … soft out` that
//! re-sends that neighbour's routes at once.
//!
//! What cannot be changed safely line by line returns [`NeedsReload`] with the reason: a
//! route-map whose name stayed while its contents changed, or a default-VRF router that
//! must go while VRF routers stay.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::commands::Line;
use super::commands::{
    bfd_profile_lines, prefix_list_line, route_map_delay_line, route_map_entry_lines,
};
use super::model::{
    AddressFamily, BfdProfileConfig, FrrConfig, Neighbor, NeighborPolicy, PrefixList,
    PrefixListEntry, RouteMap, Router, span,
};

mod routers;
use routers::routers;

/// The change from one configuration to another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrrDelta {
    /// Configuration commands, in order, as typed after `configure terminal`.
    pub commands: Vec<String>,
    /// Exec commands to run after the configuration: `clear bgp … soft out`.
    pub refresh: Vec<String>,
    /// Networks announced that were not, over every router.
    pub networks_added: usize,
    /// Networks no longer announced, over every router.
    pub networks_removed: usize,
}

impl FrrDelta {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty() && self.refresh.is_empty()
    }
}

/// The change cannot be made line by line; the reason says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("needs a full reload: {0}")]
pub struct NeedsReload(pub String);

/// Computes the commands that turn `old` (running) into `new`.
pub fn diff(old: &FrrConfig, new: &FrrConfig) -> Result<FrrDelta, NeedsReload> {
    let mut early = Vec::new();
    let mut middle = Vec::new();
    let mut late = Vec::new();
    let mut delta = FrrDelta::default();

    if old.log_level != new.log_level {
        early.push(format!("log stdout {}", new.log_level));
        if old.log_level.is_empty() {
            // From a blank FRR: the rest of the fixed header.
            early.push("log timestamp precision 3".into());
        }
    }
    // `no ip forwarding` mirrors the kernel's setting, which zebra reads and prints; the
    // model follows the node's facts, so there is nothing to type for it.
    if new.route_map_delay != old.route_map_delay {
        match new.route_map_delay {
            Some(seconds) => early.push(route_map_delay_line(seconds)),
            None => late.push("no bgp route-map delay-timer".into()),
        }
    }
    if new.nht_resolve_via_default && !old.nht_resolve_via_default {
        early.push("ip nht resolve-via-default".into());
        early.push("ipv6 nht resolve-via-default".into());
    }
    if !new.nht_resolve_via_default && old.nht_resolve_via_default {
        late.push("no ip nht resolve-via-default".into());
        late.push("no ipv6 nht resolve-via-default".into());
    }

    bfd_profiles(&old.bfd_profiles, &new.bfd_profiles, &mut early, &mut late);
    for (family, old_lists, new_lists) in [
        ("ip", &old.ipv4_prefix_lists, &new.ipv4_prefix_lists),
        ("ipv6", &old.ipv6_prefix_lists, &new.ipv6_prefix_lists),
    ] {
        prefix_lists(family, old_lists, new_lists, &mut early, &mut late);
    }
    route_maps(&old.route_maps, &new.route_maps, &mut early, &mut late)?;
    routers(old, new, &mut middle, &mut delta)?;

    delta.commands = early;
    delta.commands.append(&mut middle);
    delta.commands.append(&mut late);
    delta.refresh = refreshes(old, new);
    Ok(delta)
}

fn bfd_profiles(
    old: &[BfdProfileConfig],
    new: &[BfdProfileConfig],
    early: &mut Vec<String>,
    late: &mut Vec<String>,
) {
    let old_by_name: BTreeMap<&str, &BfdProfileConfig> =
        old.iter().map(|p| (p.name.as_str(), p)).collect();
    let new_names: BTreeSet<&str> = new.iter().map(|p| p.name.as_str()).collect();
    let mut lines = Vec::new();
    for profile in new {
        let before = old_by_name.get(profile.name.as_str()).copied();
        if before == Some(profile) {
            continue;
        }
        lines.push(format!(" profile {}", profile.name));
        lines.extend(bfd_profile_lines(before, profile));
        lines.push(" exit".into());
    }
    if !lines.is_empty() {
        early.push("bfd".into());
        early.append(&mut lines);
        early.push("exit".into());
    }
    if new.is_empty() && !old.is_empty() {
        late.push("no bfd".into());
        return;
    }
    let gone: Vec<String> = old
        .iter()
        .filter(|p| !new_names.contains(p.name.as_str()))
        .map(|p| format!(" no profile {}", p.name))
        .collect();
    if !gone.is_empty() {
        late.push("bfd".into());
        late.extend(gone);
        late.push("exit".into());
    }
}

/// The entry of `list` numbered `seq`: entries are in sequence order, each number once.
fn entry_numbered(list: &PrefixList, seq: u32) -> Option<&PrefixListEntry> {
    list.entries
        .binary_search_by_key(&seq, |e| e.seq)
        .ok()
        .map(|i| &list.entries[i])
}

fn prefix_lists(
    family: &str,
    old: &[PrefixList],
    new: &[PrefixList],
    early: &mut Vec<String>,
    late: &mut Vec<String>,
) {
    let old_by_name: BTreeMap<&str, &PrefixList> =
        old.iter().map(|l| (l.name.as_str(), l)).collect();
    let new_by_name: BTreeMap<&str, &PrefixList> =
        new.iter().map(|l| (l.name.as_str(), l)).collect();
    for list in new {
        let before = old_by_name.get(list.name.as_str());
        for entry in &list.entries {
            match before.and_then(|l| entry_numbered(l, entry.seq)) {
                Some(was) if was == entry => continue,
                Some(was) => {
                    early.push(format!("no {}", prefix_list_line(family, &list.name, was)))
                }
                None => {}
            }
            early.push(prefix_list_line(family, &list.name, entry));
        }
    }
    for list in old {
        match new_by_name.get(list.name.as_str()) {
            None => late.push(format!("no {family} prefix-list {}", list.name)),
            Some(kept) => {
                for entry in list
                    .entries
                    .iter()
                    .filter(|e| entry_numbered(kept, e.seq).is_none())
                {
                    late.push(format!(
                        "no {}",
                        prefix_list_line(family, &list.name, entry)
                    ));
                }
            }
        }
    }
}

fn route_maps(
    old: &[RouteMap],
    new: &[RouteMap],
    early: &mut Vec<String>,
    late: &mut Vec<String>,
) -> Result<(), NeedsReload> {
    let old_by_name: BTreeMap<&str, &RouteMap> = old.iter().map(|m| (m.name.as_str(), m)).collect();
    let new_names: BTreeSet<&str> = new.iter().map(|m| m.name.as_str()).collect();
    for map in new {
        match old_by_name.get(map.name.as_str()) {
            Some(was) if *was == map => {}
            Some(_) => {
                return Err(NeedsReload(format!(
                    "route-map {} would change in place",
                    map.name
                )));
            }
            None => {
                for entry in &map.entries {
                    early.extend(route_map_entry_lines(&map.name, entry));
                }
            }
        }
    }
    for map in old.iter().filter(|m| !new_names.contains(m.name.as_str())) {
        late.push(format!("no route-map {}", map.name));
    }
    Ok(())
}

/// What a neighbour's outbound policy does to a prefix: denied, or permitted with these
/// `set` lines.
fn evaluate<'a>(config: &'a FrrConfig, route_map: &str, prefix: &IpNet) -> Option<&'a [Line]> {
    let map = config.route_maps.iter().find(|m| m.name == route_map)?;
    for entry in &map.entries {
        let matched = match &entry.match_prefix_list {
            None => true,
            Some((family, list)) => {
                let lists = if *family == "ip" {
                    &config.ipv4_prefix_lists
                } else {
                    &config.ipv6_prefix_lists
                };
                lists
                    .iter()
                    .find(|l| &l.name == list)
                    .and_then(|l| l.entries.iter().find(|e| covers(e, prefix)))
                    .is_some_and(|e| e.action == "permit")
            }
        };
        if matched {
            return (entry.action == "permit").then_some(entry.set.as_slice());
        }
    }
    None
}

/// Whether a prefix-list entry matches `prefix`.
fn covers(entry: &PrefixListEntry, prefix: &IpNet) -> bool {
    let Some(p) = entry.prefix else {
        return true;
    };
    if std::mem::discriminant(&p) != std::mem::discriminant(prefix) {
        return false;
    }
    match entry.le {
        None => p == *prefix,
        Some(le) => {
            p.contains(&prefix.network())
                && prefix.prefix_len() >= p.prefix_len()
                && prefix.prefix_len() <= le
        }
    }
}

/// `clear bgp … soft out` for every neighbour whose route-map stays but now treats a network
/// announced before and after differently.
fn refreshes(old: &FrrConfig, new: &FrrConfig) -> Vec<String> {
    let changed_entries = changed_list_entries(old, new);
    if changed_entries.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for router in &new.routers {
        let Some(was) = old
            .routers
            .iter()
            .find(|r| r.vrf == router.vrf && r.asn == router.asn)
        else {
            continue;
        };
        let vrf = router
            .vrf
            .as_ref()
            .map(|v| format!(" vrf {v}"))
            .unwrap_or_default();
        for (family, list_family, before, after) in [
            ("ipv4", "ip", &was.ipv4, &router.ipv4),
            ("ipv6", "ipv6", &was.ipv6, &router.ipv6),
        ] {
            let (Some(before), Some(after)) = (before, after) else {
                continue;
            };
            // Networks announced before and after that a changed list entry matches. Both
            // lists are in prefix order: an entry's span is found by bisection, so a change
            // costs what it matches, not the size of the table.
            let kept = |net: &IpNet| after.networks.binary_search(net).is_ok();
            let mut affected: BTreeSet<IpNet> = BTreeSet::new();
            for (_, entry) in changed_entries.iter().filter(|(f, _)| *f == list_family) {
                let inside = match entry.prefix {
                    None => &before.networks[..],
                    Some(p) => {
                        let (low, high) = span(&p);
                        let from = before.networks.partition_point(|n| *n < low);
                        let to = before.networks.partition_point(|n| *n <= high);
                        &before.networks[from..to]
                    }
                };
                affected.extend(
                    inside
                        .iter()
                        .filter(|net| covers(entry, net) && kept(net))
                        .copied(),
                );
            }
            if affected.is_empty() {
                continue;
            }
            for policy in &after.neighbors {
                let Some(prior) = before.neighbors.iter().find(|p| p.peer == policy.peer) else {
                    continue;
                };
                if prior.route_map_out != policy.route_map_out {
                    continue;
                }
                let touched = affected.iter().any(|net| {
                    evaluate(old, &prior.route_map_out, net)
                        != evaluate(new, &policy.route_map_out, net)
                });
                if touched {
                    out.push(format!(
                        "clear bgp{vrf} {family} unicast {} soft out",
                        policy.peer
                    ));
                }
            }
        }
    }
    out
}

/// Prefix-list entries present on one side only, as (family keyword, entry).
fn changed_list_entries<'a>(
    old: &'a FrrConfig,
    new: &'a FrrConfig,
) -> Vec<(&'static str, &'a PrefixListEntry)> {
    let mut out = Vec::new();
    for (family, a, b) in [
        ("ip", &old.ipv4_prefix_lists, &new.ipv4_prefix_lists),
        ("ipv6", &old.ipv6_prefix_lists, &new.ipv6_prefix_lists),
    ] {
        for (x, y) in [(a, b), (b, a)] {
            let other: BTreeMap<&str, &PrefixList> =
                y.iter().map(|l| (l.name.as_str(), l)).collect();
            for list in x {
                let there = other.get(list.name.as_str());
                for entry in &list.entries {
                    if there.and_then(|l| entry_numbered(l, entry.seq)) != Some(entry) {
                        out.push((family, entry));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
