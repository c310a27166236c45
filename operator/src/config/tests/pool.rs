//! IPAddressPool: addresses, overlaps, avoidBuggyIPs and service allocation.

use super::*;

#[test]
fn pool_needs_addresses() {
    assert_eq!(
        errors(&with_pools(vec![pool("a", &[])])),
        ["IPAddressPool/metallb-system/a: spec.addresses: must list at least one CIDR or range"]
    );
}

#[test]
fn pool_addresses_must_parse() {
    assert_eq!(
        errors(&with_pools(vec![pool(
            "a",
            &["10.0.0.0/24", "10.0.1.9-10.0.1.1"]
        )])),
        [
            "IPAddressPool/metallb-system/a: spec.addresses[1]: \"10.0.1.9-10.0.1.1\" is not a valid range: the start 10.0.1.9 is after the end 10.0.1.1"
        ]
    );
    let config = ok(&with_pools(vec![pool(
        "a",
        &["10.0.0.0/24", "10.0.1.1-10.0.1.9", "fc00::/120"],
    )]));
    let a = &config.pools["a"];
    assert!(a.has_ipv4() && a.has_ipv6() && a.auto_assign && !a.avoid_buggy_ips);
    assert_eq!(a.cidrs().count(), 1 + 4 + 1);
}

#[test]
fn pools_may_not_overlap_each_other() {
    assert_eq!(
        errors(&with_pools(vec![
            pool("a", &["10.0.0.0/24"]),
            pool("b", &["10.0.0.200-10.0.0.210"])
        ])),
        [
            "IPAddressPool/metallb-system/b: spec.addresses[0]: \"10.0.0.200-10.0.0.210\" overlaps IPAddressPool \"a\" (spec.addresses[0], \"10.0.0.0/24\"): 10.0.0.200/29 and 10.0.0.0/24 share addresses, and an address may belong to one pool entry only"
        ]
    );
    ok(&with_pools(vec![
        pool("a", &["10.0.0.0/24"]),
        pool("b", &["10.0.1.0-10.0.1.10"]),
    ]));
}

#[test]
fn a_pool_may_not_overlap_itself() {
    assert_eq!(
        errors(&with_pools(vec![pool("a", &["fc00::/64", "fc00::10/124"])])),
        [
            "IPAddressPool/metallb-system/a: spec.addresses[1]: \"fc00::10/124\" overlaps spec.addresses[0] (\"fc00::/64\") of the same pool: fc00::10/124 and fc00::/64 share addresses, and an address may belong to one pool entry only"
        ]
    );
    ok(&with_pools(vec![pool(
        "a",
        &["fc00::/64", "fc00:0:0:1::/124"],
    )]));
}

#[test]
fn host_bits_in_a_cidr_are_cleared_with_a_warning() {
    let objects = with_pools(vec![pool("a", &["10.0.0.5/24"])]);
    let config = ok(&objects);
    assert_eq!(
        config.pools["a"].entries[0].cidrs[0].to_string(),
        "10.0.0.0/24"
    );
    assert_eq!(
        warnings(&objects),
        [
            "IPAddressPool/metallb-system/a: spec.addresses[0]: \"10.0.0.5/24\" has host bits set; it is read as 10.0.0.0/24"
        ]
    );
}

#[test]
fn avoid_buggy_ips_excludes_dot_zero_and_dot_255() {
    let mut p = pool("a", &["10.0.0.0/24"]);
    p.spec.avoid_buggy_ips = Some(true);
    let config = ok(&with_pools(vec![p]));
    let a = &config.pools["a"];
    assert!(!a.contains("10.0.0.0".parse().unwrap()));
    assert!(!a.contains("10.0.0.255".parse().unwrap()));
    assert!(a.contains("10.0.0.1".parse().unwrap()));
}

#[test]
fn the_pool_of_a_services_ips_holds_them_all_under_its_avoid_buggy_ips() {
    let mut a = pool("a", &["10.0.0.0/24"]);
    a.spec.avoid_buggy_ips = Some(true);
    let b = pool("b", &["10.0.1.0/24", "fd00::/120"]);
    let config = ok(&with_pools(vec![a, b]));
    let ips = |list: &[&str]| -> Vec<std::net::IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    };
    let name = |list: &[&str]| config.pool_of(&ips(list)).map(|p| p.name.clone());
    assert_eq!(name(&["10.0.0.1"]).as_deref(), Some("a"));
    assert_eq!(name(&["10.0.1.0", "fd00::1"]).as_deref(), Some("b"));
    // An address avoidBuggyIPs leaves out is in no pool, as the allocator sees it.
    assert_eq!(name(&["10.0.0.0"]), None);
    assert_eq!(name(&["10.0.0.255"]), None);
    // IPs from two pools, or none.
    assert_eq!(name(&["10.0.0.1", "fd00::1"]), None);
    assert_eq!(name(&[]), None);
}

#[test]
fn service_allocation_namespaces_must_be_unique() {
    let mut p = pool("a", &["10.0.0.0/24"]);
    p.spec.service_allocation = Some(ServiceAllocation {
        namespaces: Some(vec!["web".into(), "web".into()]),
        ..Default::default()
    });
    assert_eq!(
        errors(&with_pools(vec![p.clone()])),
        [
            "IPAddressPool/metallb-system/a: spec.serviceAllocation.namespaces[1]: \"web\" is already listed at spec.serviceAllocation.namespaces[0]"
        ]
    );
    p.spec.service_allocation.as_mut().unwrap().namespaces = Some(vec!["web".into(), "db".into()]);
    ok(&with_pools(vec![p]));
}

#[test]
fn namespace_selectors_resolve_against_namespace_labels() {
    let mut p = pool("a", &["10.0.0.0/24"]);
    p.spec.service_allocation = Some(ServiceAllocation {
        priority: Some(10),
        namespaces: Some(vec!["extra".into()]),
        namespace_selectors: Some(vec![sel(&[("team", "red")])]),
        ..Default::default()
    });
    let objects = ClusterObjects {
        pools: vec![p],
        namespaces: vec![
            namespace("red-a", &[("team", "red")]),
            namespace("blue", &[("team", "blue")]),
        ],
        ..Default::default()
    };
    let allocation = ok(&objects).pools["a"].allocation.clone().unwrap();
    assert_eq!(allocation.priority, 10);
    assert_eq!(
        allocation.namespaces.into_iter().collect::<Vec<_>>(),
        ["extra", "red-a"]
    );
    assert!(allocation.service_selectors.is_empty());
}

#[test]
fn empty_service_allocation_matches_every_service() {
    let mut p = pool("a", &["10.0.0.0/24"]);
    p.spec.service_allocation = Some(ServiceAllocation {
        priority: Some(1),
        ..Default::default()
    });
    let allocation = ok(&with_pools(vec![p])).pools["a"]
        .allocation
        .clone()
        .unwrap();
    assert_eq!(allocation.service_selectors, vec![Selector::everything()]);
}

#[test]
fn service_allocation_selectors_must_not_repeat() {
    let mut p = pool("a", &["10.0.0.0/24"]);
    p.spec.service_allocation = Some(ServiceAllocation {
        service_selectors: Some(vec![sel(&[("app", "web")]), sel(&[("app", "web")])]),
        ..Default::default()
    });
    assert_eq!(
        errors(&with_pools(vec![p])),
        [
            "IPAddressPool/metallb-system/a: spec.serviceAllocation.serviceSelectors[1]: duplicates spec.serviceAllocation.serviceSelectors[0] (app=web)"
        ]
    );
}
