//! IPAddressPool loading: address syntax, overlaps across and within pools, and
//! serviceAllocation (namespaces resolved through namespaceSelectors, as MetalLB does).

use std::collections::{BTreeMap, BTreeSet};

use super::addresses::{PlacedCidr, overlaps, parse_entry};
use super::error::{Findings, ObjectRef};
use super::selector::{any_matches, parse_selectors};
use super::{
    ClusterObjects, LoadOptions, Pool, PoolAllocation, Selector, identify, insert_unique,
    labels_of, names, reject_duplicates,
};

pub(super) fn load(
    objects: &ClusterObjects,
    options: &LoadOptions,
    findings: &mut Findings,
) -> BTreeMap<String, Pool> {
    let mut out = BTreeMap::new();
    let mut placed = Vec::new();
    for object in &objects.pools {
        let Some(reference) = identify(object, options, findings) else {
            continue;
        };
        let before = findings.error_count();
        let spec = &object.spec;
        if spec.addresses.is_empty() {
            findings.invalid(
                &reference,
                "spec.addresses",
                "must list at least one CIDR or range",
            );
        }
        let mut entries = Vec::new();
        for (i, text) in spec.addresses.iter().enumerate() {
            let field = format!("spec.addresses[{i}]");
            let Some(parsed) = findings.check(&reference, &field, parse_entry(text)) else {
                continue;
            };
            if let Some(network) = parsed.host_bits_cleared {
                findings.warn(
                    &reference,
                    &field,
                    format!("{text:?} has host bits set; it is read as {network}"),
                );
            }
            for cidr in &parsed.entry.cidrs {
                placed.push(PlacedCidr {
                    cidr: *cidr,
                    origin: (reference.clone(), i, text.clone()),
                });
            }
            entries.push(parsed.entry);
        }
        let allocation = spec
            .service_allocation
            .as_ref()
            .and_then(|a| load_allocation(a, objects, &reference, findings));
        let pool = Pool {
            name: reference.name.clone(),
            labels: labels_of(object),
            entries,
            auto_assign: spec.auto_assign.unwrap_or(true),
            avoid_buggy_ips: spec.avoid_buggy_ips.unwrap_or(false),
            allocation,
            bgp_advertisements: BTreeSet::new(),
            l2_advertisements: BTreeSet::new(),
        };
        if findings.error_count() == before {
            insert_unique(&mut out, &reference, pool, findings);
        }
    }
    let mut reported = BTreeSet::new();
    for (cover, inner) in overlaps(placed) {
        let (cover_ref, cover_index, cover_text) = &cover.origin;
        let (inner_ref, inner_index, inner_text) = &inner.origin;
        if !reported.insert((
            inner_ref.clone(),
            *inner_index,
            cover_ref.clone(),
            *cover_index,
        )) {
            continue;
        }
        let whose = if cover_ref == inner_ref {
            format!("spec.addresses[{cover_index}] ({cover_text:?}) of the same pool")
        } else {
            format!(
                "IPAddressPool {:?} (spec.addresses[{cover_index}], {cover_text:?})",
                cover_ref.name
            )
        };
        findings.invalid(
            inner_ref,
            format!("spec.addresses[{inner_index}]"),
            format!(
                "{inner_text:?} overlaps {whose}: {} and {} share addresses, and an address may belong to one pool entry only",
                inner.cidr, cover.cidr
            ),
        );
        out.remove(&inner_ref.name);
    }
    out
}

fn load_allocation(
    allocation: &crate::api::ServiceAllocation,
    objects: &ClusterObjects,
    reference: &ObjectRef,
    findings: &mut Findings,
) -> Option<PoolAllocation> {
    let listed = allocation.namespaces.clone().unwrap_or_default();
    let mut ok = reject_duplicates(
        &listed,
        reference,
        "spec.serviceAllocation.namespaces",
        findings,
    );
    for (i, ns) in listed.iter().enumerate() {
        ok &= findings
            .check(
                reference,
                format!("spec.serviceAllocation.namespaces[{i}]"),
                names::check_dns_label(ns),
            )
            .is_some();
    }
    let namespace_selectors = parse_selectors(
        allocation.namespace_selectors.as_ref(),
        reference,
        "spec.serviceAllocation.namespaceSelectors",
        findings,
    );
    let service_selectors = parse_selectors(
        allocation.service_selectors.as_ref(),
        reference,
        "spec.serviceAllocation.serviceSelectors",
        findings,
    );
    let (Some(namespace_selectors), Some(mut service_selectors)) =
        (namespace_selectors, service_selectors)
    else {
        return None;
    };
    if !ok {
        return None;
    }
    let mut namespaces: BTreeSet<String> = listed.into_iter().collect();
    if !namespace_selectors.is_empty() {
        for ns in &objects.namespaces {
            if any_matches(&namespace_selectors, &labels_of(ns)) {
                namespaces.extend(ns.metadata.name.clone());
            }
        }
    }
    if namespaces.is_empty() && namespace_selectors.is_empty() && service_selectors.is_empty() {
        service_selectors.push(Selector::everything());
    }
    Some(PoolAllocation {
        priority: allocation.priority.unwrap_or(0),
        namespaces,
        namespace_selectors,
        service_selectors,
    })
}
