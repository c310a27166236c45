//! BGPAdvertisement and L2Advertisement loading: pool selection, aggregation lengths against
//! the pools they announce, communities and aliases, MetalLB's LOCAL_PREF compatibility rule,
//! and BFD echo against IPv6 pools.

use std::collections::{BTreeMap, BTreeSet};

use super::community::parse_community;
use super::error::{Findings, ObjectRef};
use super::selector::{any_matches, parse_selectors};
use super::{
    BfdProfile, BgpAdvertisement, BgpCommunity, ClusterObjects, L2Advertisement, LoadOptions,
    NodePreference, Peer, Pool, Selector, identify, insert_unique, labels_of, names,
    reject_duplicates,
};
use crate::api;

/// FRR and MetalLB cap the communities of one advertisement.
pub(super) const MAX_COMMUNITIES: usize = 63;

/// What BGPAdvertisement checks consult.
pub(super) struct BgpContext<'a> {
    pub pools: &'a BTreeMap<String, Pool>,
    pub peers: &'a BTreeMap<String, Peer>,
    pub aliases: &'a BTreeMap<String, BgpCommunity>,
    pub bfd_profiles: &'a BTreeMap<String, BfdProfile>,
}

/// Resolves pool names and selectors to pool names. Unknown names are warnings, as MetalLB
/// ignores them (the pool may be created later).
fn select_pools(
    names_listed: Option<&Vec<String>>,
    selectors: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>>,
    objects: &ClusterObjects,
    reference: &ObjectRef,
    findings: &mut Findings,
) -> Option<BTreeSet<String>> {
    let listed = names_listed.cloned().unwrap_or_default();
    let ok = reject_duplicates(&listed, reference, "spec.ipAddressPools", findings);
    let selectors = parse_selectors(
        selectors,
        reference,
        "spec.ipAddressPoolSelectors",
        findings,
    )?;
    if !ok {
        return None;
    }
    let all: Vec<(String, BTreeMap<String, String>)> = objects
        .pools
        .iter()
        .filter_map(|p| p.metadata.name.clone().map(|n| (n, labels_of(p))))
        .collect();
    if listed.is_empty() && selectors.is_empty() {
        return Some(all.into_iter().map(|(n, _)| n).collect());
    }
    let mut selected = BTreeSet::new();
    for (i, name) in listed.iter().enumerate() {
        if !all.iter().any(|(n, _)| n == name) {
            findings.warn(
                reference,
                format!("spec.ipAddressPools[{i}]"),
                format!("IPAddressPool {name:?} does not exist; nothing is announced for it until it does"),
            );
        }
        selected.insert(name.clone());
    }
    for (name, labels) in &all {
        if selectors.iter().any(|s| s.matches(labels)) {
            selected.insert(name.clone());
        }
    }
    Some(selected)
}

fn node_names_selected(selectors: &[Selector], objects: &ClusterObjects) -> BTreeSet<String> {
    objects
        .nodes
        .iter()
        .filter(|n| any_matches(selectors, &labels_of(*n)))
        .filter_map(|n| n.metadata.name.clone())
        .collect()
}

pub(super) fn load_bgp(
    objects: &ClusterObjects,
    options: &LoadOptions,
    context: &BgpContext<'_>,
    findings: &mut Findings,
) -> BTreeMap<String, BgpAdvertisement> {
    let mut out: BTreeMap<String, BgpAdvertisement> = BTreeMap::new();
    let mut specs_seen: Vec<(&api::BGPAdvertisementSpec, String)> = Vec::new();
    let known_peers: BTreeSet<String> = objects
        .peers
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    for object in &objects.bgp_advertisements {
        let Some(reference) = identify(object, options, findings) else {
            continue;
        };
        if let Some((_, first)) = specs_seen.iter().find(|(s, _)| **s == object.spec) {
            findings.warn(
                &reference,
                "spec",
                format!("is identical to BGPAdvertisement {first:?}; one of them is enough"),
            );
        }
        specs_seen.push((&object.spec, reference.name.clone()));
        let before = findings.error_count();
        let ad = load_bgp_one(
            &object.spec,
            &reference,
            objects,
            context,
            &known_peers,
            findings,
        );
        if let Some(ad) = ad
            && findings.error_count() == before
        {
            check_against_pools(&ad, &out, &reference, objects, context, findings);
            if findings.error_count() == before {
                insert_unique(&mut out, &reference, ad, findings);
            }
        }
    }
    out
}

fn load_bgp_one(
    spec: &api::BGPAdvertisementSpec,
    reference: &ObjectRef,
    objects: &ClusterObjects,
    context: &BgpContext<'_>,
    known_peers: &BTreeSet<String>,
    findings: &mut Findings,
) -> Option<BgpAdvertisement> {
    let before = findings.error_count();
    let length = |value: Option<i32>, max: i32, field: &str, findings: &mut Findings| -> u8 {
        match value {
            None => max as u8,
            Some(v) if (1..=max).contains(&v) => v as u8,
            Some(v) => {
                findings.invalid(
                    reference,
                    field,
                    format!("{v} is not a prefix length; use 1 to {max}"),
                );
                max as u8
            }
        }
    };
    let aggregation_length = length(
        spec.aggregation_length,
        32,
        "spec.aggregationLength",
        findings,
    );
    let aggregation_length_v6 = length(
        spec.aggregation_length_v6,
        128,
        "spec.aggregationLengthV6",
        findings,
    );
    let has_service_selectors = spec
        .service_selectors
        .as_ref()
        .is_some_and(|s| !s.is_empty());
    if has_service_selectors {
        if aggregation_length != 32 {
            findings.invalid(
                reference,
                "spec.aggregationLength",
                "cannot be combined with serviceSelectors: an aggregated prefix would also cover Services the selectors leave out",
            );
        }
        if aggregation_length_v6 != 128 {
            findings.invalid(
                reference,
                "spec.aggregationLengthV6",
                "cannot be combined with serviceSelectors: an aggregated prefix would also cover Services the selectors leave out",
            );
        }
    }
    let texts = spec.communities.clone().unwrap_or_default();
    reject_duplicates(&texts, reference, "spec.communities", findings);
    if texts.len() > MAX_COMMUNITIES {
        findings.invalid(
            reference,
            "spec.communities",
            format!(
                "lists {} communities; at most {MAX_COMMUNITIES} fit one advertisement",
                texts.len()
            ),
        );
    }
    let mut communities = BTreeSet::new();
    for (i, text) in texts.iter().enumerate() {
        let field = format!("spec.communities[{i}]");
        if let Some(value) = context.aliases.get(text) {
            communities.insert(*value);
        } else if text.contains(':') {
            if let Some(value) = findings.check(reference, &field, parse_community(text)) {
                communities.insert(value);
            }
        } else if findings
            .check(reference, &field, names::check_alias(text))
            .is_some()
        {
            findings.missing(
                reference,
                &field,
                format!("{text:?} is not a community value and no Community object defines it as an alias; the configuration loads once one does"),
            );
        }
    }
    let pools = select_pools(
        spec.ip_address_pools.as_ref(),
        spec.ip_address_pool_selectors.as_ref(),
        objects,
        reference,
        findings,
    );
    let node_selectors = parse_selectors(
        spec.node_selectors.as_ref(),
        reference,
        "spec.nodeSelectors",
        findings,
    );
    let peers_listed = spec.peers.clone().unwrap_or_default();
    reject_duplicates(&peers_listed, reference, "spec.peers", findings);
    for (i, peer) in peers_listed.iter().enumerate() {
        if !known_peers.contains(peer) {
            findings.warn(
                reference,
                format!("spec.peers[{i}]"),
                format!(
                    "BGPPeer {peer:?} does not exist; this advertisement reaches it once it does"
                ),
            );
        }
    }
    let service_selectors = parse_selectors(
        spec.service_selectors.as_ref(),
        reference,
        "spec.serviceSelectors",
        findings,
    );
    if findings.error_count() != before {
        return None;
    }
    Some(BgpAdvertisement {
        name: reference.name.clone(),
        aggregation_length,
        aggregation_length_v6,
        local_pref: spec.local_pref.filter(|lp| *lp != 0),
        communities,
        pools: pools?,
        node_selectors: node_selectors?,
        peers: peers_listed.into_iter().collect(),
        service_selectors: service_selectors?,
    })
}

/// Rules between an advertisement and the pools it announces, and the advertisements
/// already loaded for the same pools.
fn check_against_pools(
    ad: &BgpAdvertisement,
    loaded: &BTreeMap<String, BgpAdvertisement>,
    reference: &ObjectRef,
    objects: &ClusterObjects,
    context: &BgpContext<'_>,
    findings: &mut Findings,
) {
    for pool in ad.pools.iter().filter_map(|name| context.pools.get(name)) {
        for entry in &pool.entries {
            let (length, field) = if entry.is_ipv4() {
                (ad.aggregation_length, "spec.aggregationLength")
            } else {
                (ad.aggregation_length_v6, "spec.aggregationLengthV6")
            };
            let shortest = entry.shortest_prefix();
            if length < shortest {
                findings.invalid(
                    reference,
                    field,
                    format!(
                        "{length} is shorter than /{shortest} of address {:?} in IPAddressPool {:?}: the aggregated prefix would cover addresses outside the pool (use {shortest} or more)",
                        entry.text, pool.name
                    ),
                );
            }
        }
        if pool.has_ipv6() {
            let echo_peers = context
                .peers
                .values()
                .filter(|p| ad.reaches_peer(&p.name))
                .filter(|p| {
                    p.bfd_profile
                        .as_ref()
                        .and_then(|b| context.bfd_profiles.get(b))
                        .is_some_and(|b| b.echo_mode)
                });
            for peer in echo_peers {
                findings.invalid(
                    reference,
                    "spec.peers",
                    format!(
                        "announces IPv6 pool {:?} to BGPPeer {:?}, whose BFDProfile {:?} enables echo mode, which BFD does not support for IPv6",
                        pool.name,
                        peer.name,
                        peer.bfd_profile.as_deref().unwrap_or_default()
                    ),
                );
            }
        }
        if !ad.service_selectors.is_empty() {
            continue;
        }
        for other in loaded
            .values()
            .filter(|o| o.pools.contains(&pool.name) && o.service_selectors.is_empty())
        {
            if !local_prefs_compatible(ad, other, pool, objects) {
                findings.invalid(
                    reference,
                    "spec.localPref",
                    format!(
                        "{} conflicts with localPref {} of BGPAdvertisement {:?}: both announce pool {:?} with the same aggregation, to the same peers, from the same nodes; a prefix can carry one LOCAL_PREF",
                        ad.local_pref.unwrap_or(0),
                        other.local_pref.unwrap_or(0),
                        other.name,
                        pool.name
                    ),
                );
            }
        }
    }
}

/// MetalLB's rule: two advertisements of a pool may set different LOCAL_PREFs only if they
/// can never produce the same prefix to the same peer from the same node.
fn local_prefs_compatible(
    a: &BgpAdvertisement,
    b: &BgpAdvertisement,
    pool: &Pool,
    objects: &ClusterObjects,
) -> bool {
    if a.local_pref == b.local_pref {
        return true;
    }
    let (v4, v6) = (pool.has_ipv4(), pool.has_ipv6());
    let v4_differs = a.aggregation_length != b.aggregation_length;
    let v6_differs = a.aggregation_length_v6 != b.aggregation_length_v6;
    let aggregation_differs = match (v4, v6) {
        (true, true) => v4_differs && v6_differs,
        (true, false) => v4_differs,
        (false, true) => v6_differs,
        (false, false) => true,
    };
    if aggregation_differs {
        return true;
    }
    if !a.peers.is_empty() && !b.peers.is_empty() && a.peers.is_disjoint(&b.peers) {
        return true;
    }
    if objects.nodes.is_empty() {
        return false;
    }
    node_names_selected(&a.node_selectors, objects)
        .is_disjoint(&node_names_selected(&b.node_selectors, objects))
}

pub(super) fn load_l2(
    objects: &ClusterObjects,
    options: &LoadOptions,
    findings: &mut Findings,
) -> BTreeMap<String, L2Advertisement> {
    let mut out = BTreeMap::new();
    for object in &objects.l2_advertisements {
        let Some(reference) = identify(object, options, findings) else {
            continue;
        };
        let before = findings.error_count();
        let spec = &object.spec;
        let pools = select_pools(
            spec.ip_address_pools.as_ref(),
            spec.ip_address_pool_selectors.as_ref(),
            objects,
            &reference,
            findings,
        );
        let node_selectors = parse_selectors(
            spec.node_selectors.as_ref(),
            &reference,
            "spec.nodeSelectors",
            findings,
        );
        let service_selectors = parse_selectors(
            spec.service_selectors.as_ref(),
            &reference,
            "spec.serviceSelectors",
            findings,
        );
        let interfaces = spec.interfaces.clone().unwrap_or_default();
        reject_duplicates(&interfaces, &reference, "spec.interfaces", findings);
        for (i, name) in interfaces.iter().enumerate() {
            findings.check(
                &reference,
                format!("spec.interfaces[{i}]"),
                names::check_interface(name),
            );
        }
        let mut preferred_nodes = Vec::new();
        for (i, preference) in spec.preferred_node_selectors.iter().flatten().enumerate() {
            let field = format!("spec.preferredNodeSelectors[{i}]");
            if !(1..=100).contains(&preference.weight) {
                findings.invalid(
                    &reference,
                    format!("{field}.weight"),
                    format!("{} is outside 1–100", preference.weight),
                );
            }
            let selector = super::selector::parse_selector(
                &preference.preference,
                &reference,
                &format!("{field}.preference"),
                findings,
            );
            if let Some(selector) = selector {
                preferred_nodes.push(NodePreference {
                    weight: preference.weight.clamp(1, 100) as u32,
                    selector,
                });
            }
        }
        if findings.error_count() != before {
            continue;
        }
        let (Some(pools), Some(node_selectors), Some(service_selectors)) =
            (pools, node_selectors, service_selectors)
        else {
            continue;
        };
        let ad = L2Advertisement {
            name: reference.name.clone(),
            pools,
            node_selectors,
            interfaces: interfaces.into_iter().collect(),
            service_selectors,
            preferred_nodes,
        };
        insert_unique(&mut out, &reference, ad, findings);
    }
    out
}
