//! BGPAdvertisement and L2Advertisement.

use super::*;

fn bgp_setup(ad: BGPAdvertisement) -> ClusterObjects {
    ClusterObjects {
        pools: vec![pool("p4", &["10.0.0.0/24"]), pool("p6", &["fc00::/120"])],
        peers: vec![peer("peer", |_| {})],
        bgp_advertisements: vec![ad],
        ..Default::default()
    }
}

#[test]
fn aggregation_lengths_are_prefix_lengths() {
    assert_eq!(
        errors(&bgp_setup(bgp_ad("ad", |s| s.aggregation_length = Some(33)))),
        [
            "BGPAdvertisement/metallb-system/ad: spec.aggregationLength: 33 is not a prefix length; use 1 to 32"
        ]
    );
    assert_eq!(
        errors(&bgp_setup(
            bgp_ad("ad", |s| s.aggregation_length_v6 = Some(129))
        )),
        [
            "BGPAdvertisement/metallb-system/ad: spec.aggregationLengthV6: 129 is not a prefix length; use 1 to 128"
        ]
    );
}

#[test]
fn aggregation_may_not_reach_outside_the_pool() {
    assert_eq!(
        errors(&bgp_setup(bgp_ad("ad", |s| s.aggregation_length = Some(16)))),
        [
            "BGPAdvertisement/metallb-system/ad: spec.aggregationLength: 16 is shorter than /24 of address \"10.0.0.0/24\" in IPAddressPool \"p4\": the aggregated prefix would cover addresses outside the pool (use 24 or more)"
        ]
    );
    let config = ok(&bgp_setup(bgp_ad("ad", |s| {
        s.aggregation_length = Some(24);
        s.aggregation_length_v6 = Some(120);
    })));
    assert_eq!(config.bgp_advertisements["ad"].aggregation_length, 24);
    assert_eq!(
        config.pools["p4"]
            .bgp_advertisements
            .iter()
            .collect::<Vec<_>>(),
        ["ad"]
    );
}

#[test]
fn aggregation_for_a_range_uses_its_widest_block() {
    let objects = ClusterObjects {
        pools: vec![pool("r", &["10.0.0.1-10.0.0.6"])],
        bgp_advertisements: vec![bgp_ad("ad", |s| s.aggregation_length = Some(29))],
        ..Default::default()
    };
    assert_eq!(
        errors(&objects),
        [
            "BGPAdvertisement/metallb-system/ad: spec.aggregationLength: 29 is shorter than /31 of address \"10.0.0.1-10.0.0.6\" in IPAddressPool \"r\": the aggregated prefix would cover addresses outside the pool (use 31 or more)"
        ]
    );
}

#[test]
fn service_selectors_exclude_aggregation() {
    assert_eq!(
        errors(&bgp_setup(bgp_ad("ad", |s| {
            s.service_selectors = Some(vec![sel(&[("app", "web")])]);
            s.aggregation_length = Some(30);
        }))),
        [
            "BGPAdvertisement/metallb-system/ad: spec.aggregationLength: cannot be combined with serviceSelectors: an aggregated prefix would also cover Services the selectors leave out"
        ]
    );
    ok(&bgp_setup(bgp_ad("ad", |s| {
        s.service_selectors = Some(vec![sel(&[("app", "web")])]);
        s.aggregation_length = Some(32);
    })));
}

#[test]
fn communities_may_be_values_or_aliases() {
    let mut objects = bgp_setup(bgp_ad("ad", |s| {
        s.communities = Some(vec![
            "65000:1".into(),
            "large:1:2:3".into(),
            "no-advertise".into(),
        ])
    }));
    let e = load(&objects, &LoadOptions::default()).unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "BGPAdvertisement/metallb-system/ad: spec.communities[2]: \"no-advertise\" is not a community value and no Community object defines it as an alias; the configuration loads once one does"
    );
    assert!(e[0].is_transient());
    objects
        .communities
        .push(community("c", &[("no-advertise", "65535:65282")]));
    let config = ok(&objects);
    assert_eq!(
        config.bgp_advertisements["ad"]
            .communities
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        ["65000:1", "65535:65282", "large:1:2:3"]
    );
}

#[test]
fn malformed_community_values_are_permanent_errors() {
    let e = load(
        &bgp_setup(bgp_ad("ad", |s| {
            s.communities = Some(vec!["99999999:1".into()])
        })),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "BGPAdvertisement/metallb-system/ad: spec.communities[0]: \"99999999:1\" is not a community: 99999999 is above 65535 (use large:A:B:C for 32-bit values)"
    );
    assert!(!e[0].is_transient());
}

#[test]
fn communities_must_not_repeat_or_exceed_63() {
    assert_eq!(
        errors(&bgp_setup(bgp_ad("ad", |s| s.communities =
            Some(vec!["1:1".into(), "1:1".into()])))),
        [
            "BGPAdvertisement/metallb-system/ad: spec.communities[1]: \"1:1\" is already listed at spec.communities[0]"
        ]
    );
    let many: Vec<String> = (0..64).map(|i| format!("1:{i}")).collect();
    assert_eq!(
        errors(&bgp_setup(
            bgp_ad("ad", |s| s.communities = Some(many.clone()))
        )),
        [
            "BGPAdvertisement/metallb-system/ad: spec.communities: lists 64 communities; at most 63 fit one advertisement"
        ]
    );
    ok(&bgp_setup(bgp_ad("ad", |s| {
        s.communities = Some(many[..63].to_vec())
    })));
}

#[test]
fn pools_and_peers_are_selected_by_name_or_label() {
    let mut objects = bgp_setup(bgp_ad("ad", |s| {
        s.ip_address_pools = Some(vec!["p4".into(), "missing".into()]);
        s.ip_address_pool_selectors = Some(vec![sel(&[("tier", "gold")])]);
        s.peers = Some(vec!["peer".into(), "ghost".into()]);
    }));
    objects.pools.push(IPAddressPool {
        metadata: labelled("gold", &[("tier", "gold")]),
        ..pool("gold", &["10.9.0.0/24"])
    });
    let config = ok(&objects);
    assert_eq!(
        config.bgp_advertisements["ad"]
            .pools
            .iter()
            .collect::<Vec<_>>(),
        ["gold", "missing", "p4"]
    );
    assert_eq!(
        warnings(&objects),
        [
            "BGPAdvertisement/metallb-system/ad: spec.ipAddressPools[1]: IPAddressPool \"missing\" does not exist; nothing is announced for it until it does",
            "BGPAdvertisement/metallb-system/ad: spec.peers[1]: BGPPeer \"ghost\" does not exist; this advertisement reaches it once it does",
        ]
    );
}

#[test]
fn no_pool_names_or_selectors_means_every_pool() {
    let config = ok(&bgp_setup(bgp_ad("ad", |_| {})));
    assert_eq!(
        config.bgp_advertisements["ad"]
            .pools
            .iter()
            .collect::<Vec<_>>(),
        ["p4", "p6"]
    );
}

#[test]
fn listed_pools_and_peers_must_not_repeat() {
    assert_eq!(
        errors(&bgp_setup(bgp_ad("ad", |s| {
            s.ip_address_pools = Some(vec!["p4".into(), "p4".into()]);
            s.peers = Some(vec!["peer".into(), "peer".into()]);
        }))),
        [
            "BGPAdvertisement/metallb-system/ad: spec.ipAddressPools[1]: \"p4\" is already listed at spec.ipAddressPools[0]",
            "BGPAdvertisement/metallb-system/ad: spec.peers[1]: \"peer\" is already listed at spec.peers[0]",
        ]
    );
}

#[test]
fn conflicting_local_prefs_on_one_pool_are_rejected() {
    let mut objects = bgp_setup(bgp_ad("a", |s| s.local_pref = Some(100)));
    objects
        .bgp_advertisements
        .push(bgp_ad("b", |s| s.local_pref = Some(200)));
    assert_eq!(
        errors(&objects),
        [
            "BGPAdvertisement/metallb-system/b: spec.localPref: 200 conflicts with localPref 100 of BGPAdvertisement \"a\": both announce pool \"p4\" with the same aggregation, to the same peers, from the same nodes; a prefix can carry one LOCAL_PREF",
            "BGPAdvertisement/metallb-system/b: spec.localPref: 200 conflicts with localPref 100 of BGPAdvertisement \"a\": both announce pool \"p6\" with the same aggregation, to the same peers, from the same nodes; a prefix can carry one LOCAL_PREF",
        ]
    );
}

#[test]
fn local_prefs_may_differ_with_other_aggregation_peers_or_nodes() {
    let base = |b: BGPAdvertisement| {
        let mut o = bgp_setup(bgp_ad("a", |s| {
            s.local_pref = Some(100);
            s.ip_address_pools = Some(vec!["p4".into()]);
            s.peers = Some(vec!["peer".into()]);
            s.node_selectors = Some(vec![sel(&[("rack", "1")])]);
        }));
        o.bgp_advertisements.push(b);
        o.peers
            .push(peer("other", |s| s.peer_address = Some("10.0.0.2".into())));
        o.nodes = vec![node("n1", &[("rack", "1")]), node("n2", &[("rack", "2")])];
        o
    };
    let differing = |edit: fn(&mut BGPAdvertisementSpec)| {
        bgp_ad("b", |s| {
            s.local_pref = Some(200);
            s.ip_address_pools = Some(vec!["p4".into()]);
            s.peers = Some(vec!["peer".into()]);
            s.node_selectors = Some(vec![sel(&[("rack", "1")])]);
            edit(s);
        })
    };
    assert_eq!(errors(&base(differing(|_| {}))).len(), 1);
    ok(&base(differing(|s| s.aggregation_length = Some(28))));
    ok(&base(differing(|s| s.peers = Some(vec!["other".into()]))));
    ok(&base(differing(|s| {
        s.node_selectors = Some(vec![sel(&[("rack", "2")])])
    })));
    ok(&base(differing(|s| {
        s.service_selectors = Some(vec![sel(&[("app", "x")])])
    })));
}

#[test]
fn identical_advertisements_are_flagged() {
    let mut objects = bgp_setup(bgp_ad("a", |s| s.local_pref = Some(100)));
    objects
        .bgp_advertisements
        .push(bgp_ad("b", |s| s.local_pref = Some(100)));
    ok(&objects);
    assert_eq!(
        warnings(&objects),
        [
            "BGPAdvertisement/metallb-system/b: spec: is identical to BGPAdvertisement \"a\"; one of them is enough"
        ]
    );
}

// ---- L2Advertisement ----

fn l2_setup(ad: L2Advertisement) -> ClusterObjects {
    ClusterObjects {
        pools: vec![pool("p", &["10.0.0.0/24"])],
        l2_advertisements: vec![ad],
        ..Default::default()
    }
}

#[test]
fn l2_preferred_node_weights_are_1_to_100() {
    let pref = |weight| PreferredNodeSelector {
        weight,
        preference: sel(&[("zone", "a")]),
    };
    assert_eq!(
        errors(&l2_setup(
            l2_ad("l2", |s| s.preferred_node_selectors = Some(vec![pref(0)]))
        )),
        [
            "L2Advertisement/metallb-system/l2: spec.preferredNodeSelectors[0].weight: 0 is outside 1–100"
        ]
    );
    let config = ok(&l2_setup(l2_ad("l2", |s| {
        s.preferred_node_selectors = Some(vec![pref(100)])
    })));
    assert_eq!(
        config.l2_advertisements["l2"].preferred_nodes[0].weight,
        100
    );
}

#[test]
fn l2_interfaces_are_interface_names_without_repeats() {
    assert_eq!(
        errors(&l2_setup(l2_ad("l2", |s| s.interfaces =
            Some(vec!["eth0".into(), "eth0".into(), "br 0".into()])))),
        [
            "L2Advertisement/metallb-system/l2: spec.interfaces[1]: \"eth0\" is already listed at spec.interfaces[0]",
            "L2Advertisement/metallb-system/l2: spec.interfaces[2]: interface name \"br 0\" contains a space; only printable ASCII without spaces is accepted",
        ]
    );
    let config = ok(&l2_setup(l2_ad("l2", |s| {
        s.interfaces = Some(vec!["eth0".into(), "bond0".into()])
    })));
    assert_eq!(config.l2_advertisements["l2"].interfaces.len(), 2);
    assert_eq!(
        config.pools["p"]
            .l2_advertisements
            .iter()
            .collect::<Vec<_>>(),
        ["l2"]
    );
}

#[test]
fn l2_selectors_are_checked() {
    assert_eq!(
        errors(&l2_setup(l2_ad("l2", |s| s.node_selectors =
            Some(vec![sel(&[("a", "b")]), sel(&[("a", "b")])])))),
        [
            "L2Advertisement/metallb-system/l2: spec.nodeSelectors[1]: duplicates spec.nodeSelectors[0] (a=b)"
        ]
    );
    let config = ok(&l2_setup(l2_ad("l2", |s| {
        s.node_selectors = Some(vec![sel(&[("a", "b")])])
    })));
    assert!(config.l2_advertisements["l2"].selects_node(&to_map(&[("a", "b")])));
    assert!(!config.l2_advertisements["l2"].selects_node(&to_map(&[("a", "c")])));
}
