//! One test per load rule: the exact error for a bad input, and success for its nearest
//! good input. Fixtures come from small builders; each test states only what it varies.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret, SecretReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::*;
use crate::api::{
    BFDProfile, BFDProfileSpec, BGPAdvertisement, BGPAdvertisementSpec, BGPPeer, BGPPeerSpec,
    Community, CommunityAlias, CommunitySpec, IPAddressPool, IPAddressPoolSpec, L2Advertisement,
    L2AdvertisementSpec, PreferredNodeSelector, ServiceAllocation,
};

const NS: &str = "metallb-system";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        ..Default::default()
    }
}

fn labelled(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        labels: Some(to_map(labels)),
        ..meta(name)
    }
}

fn to_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(to_map(pairs)),
        ..Default::default()
    }
}

fn pool(name: &str, addresses: &[&str]) -> IPAddressPool {
    let spec = IPAddressPoolSpec {
        addresses: addresses.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    IPAddressPool {
        metadata: meta(name),
        spec,
        status: None,
    }
}

fn peer(name: &str, edit: impl FnOnce(&mut BGPPeerSpec)) -> BGPPeer {
    let mut spec = BGPPeerSpec {
        my_asn: 64500,
        peer_asn: Some(64501),
        peer_address: Some("10.0.0.1".into()),
        ..Default::default()
    };
    edit(&mut spec);
    BGPPeer {
        metadata: meta(name),
        spec,
        status: None,
    }
}

fn bgp_ad(name: &str, edit: impl FnOnce(&mut BGPAdvertisementSpec)) -> BGPAdvertisement {
    let mut spec = BGPAdvertisementSpec::default();
    edit(&mut spec);
    BGPAdvertisement {
        metadata: meta(name),
        spec,
        status: None,
    }
}

fn l2_ad(name: &str, edit: impl FnOnce(&mut L2AdvertisementSpec)) -> L2Advertisement {
    let mut spec = L2AdvertisementSpec::default();
    edit(&mut spec);
    L2Advertisement {
        metadata: meta(name),
        spec,
        status: None,
    }
}

fn bfd(name: &str, edit: impl FnOnce(&mut BFDProfileSpec)) -> BFDProfile {
    let mut spec = BFDProfileSpec::default();
    edit(&mut spec);
    BFDProfile {
        metadata: meta(name),
        spec,
        status: None,
    }
}

fn community(name: &str, aliases: &[(&str, &str)]) -> Community {
    let communities = aliases
        .iter()
        .map(|(n, v)| CommunityAlias {
            name: Some(n.to_string()),
            value: Some(v.to_string()),
        })
        .collect();
    Community {
        metadata: meta(name),
        spec: CommunitySpec {
            communities: Some(communities),
        },
        status: None,
    }
}

fn secret(name: &str, kind: &str, password: Option<&str>) -> Secret {
    Secret {
        metadata: meta(name),
        type_: Some(kind.into()),
        data: password
            .map(|p| [("password".to_string(), ByteString(p.as_bytes().to_vec()))].into()),
        ..Default::default()
    }
}

fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(to_map(labels)),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(to_map(labels)),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn errors(objects: &ClusterObjects) -> Vec<String> {
    match load(objects, &LoadOptions::default()) {
        Ok(_) => vec![],
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn ok(objects: &ClusterObjects) -> Config {
    match load(objects, &LoadOptions::default()) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid configuration, got {errors:#?}"),
    }
}

fn warnings(objects: &ClusterObjects) -> Vec<String> {
    analyse(objects, &LoadOptions::default())
        .warnings
        .iter()
        .map(|w| w.to_string())
        .collect()
}

fn with_pools(pools: Vec<IPAddressPool>) -> ClusterObjects {
    ClusterObjects {
        pools,
        ..Default::default()
    }
}

fn with_peers(peers: Vec<BGPPeer>) -> ClusterObjects {
    ClusterObjects {
        peers,
        ..Default::default()
    }
}

// ---- objects in general ----

#[test]
fn objects_outside_the_ferrolb_namespace_are_rejected() {
    let mut p = pool("a", &["10.0.0.0/24"]);
    p.metadata.namespace = Some("default".into());
    assert_eq!(
        errors(&with_pools(vec![p])),
        [
            "IPAddressPool/default/a: metadata.namespace: IPAddressPool objects must be in namespace \"metallb-system\", where ferrolb reads its configuration; this one would be ignored"
        ]
    );
    let mut p = pool("a", &["10.0.0.0/24"]);
    p.metadata.namespace = None;
    ok(&with_pools(vec![p]));
}

#[test]
fn object_names_must_be_kubernetes_names() {
    assert_eq!(
        errors(&with_pools(vec![pool("Bad_Name", &["10.0.0.0/24"])])),
        [
            "IPAddressPool/metallb-system/Bad_Name: metadata.name: \"Bad_Name\" is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        ]
    );
}

#[test]
fn objects_with_the_same_name_are_rejected() {
    assert_eq!(
        errors(&with_pools(vec![
            pool("a", &["10.0.0.0/24"]),
            pool("a", &["10.0.1.0/24"])
        ])),
        [
            "IPAddressPool/metallb-system/a: metadata.name: another object of this kind has the same name in the input"
        ]
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let objects = ClusterObjects {
        pools: vec![pool("a", &["nonsense"]), pool("b", &[])],
        peers: vec![peer("p", |s| s.my_asn = 0)],
        ..Default::default()
    };
    assert_eq!(errors(&objects).len(), 3);
}

// ---- IPAddressPool ----

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

// ---- BGPPeer ----

#[test]
fn peer_needs_my_asn() {
    assert_eq!(
        errors(&with_peers(vec![peer("p", |s| s.my_asn = 0)])),
        [
            "BGPPeer/metallb-system/p: spec.myASN: must be set to the node's AS number (0 is not an AS number)"
        ]
    );
    ok(&with_peers(vec![peer("p", |s| s.my_asn = 1)]));
}

#[test]
fn peer_needs_exactly_one_of_peer_asn_and_dynamic_asn() {
    assert_eq!(
        errors(&with_peers(vec![peer("p", |s| s.peer_asn = None)])),
        ["BGPPeer/metallb-system/p: spec.peerASN: one of peerASN and dynamicASN must be set"]
    );
    assert_eq!(
        errors(&with_peers(vec![peer("p", |s| s.dynamic_asn =
            Some(crate::api::DynamicAsnMode::External))])),
        [
            "BGPPeer/metallb-system/p: spec.dynamicASN: peerASN and dynamicASN are mutually exclusive; set one"
        ]
    );
    let config = ok(&with_peers(vec![peer("p", |s| {
        s.peer_asn = None;
        s.dynamic_asn = Some(crate::api::DynamicAsnMode::Internal);
    })]));
    assert_eq!(config.peers["p"].peer_asn, PeerAsn::Internal);
    assert!(config.peers["p"].is_ibgp());
}

#[test]
fn ebgp_multihop_is_refused_for_ibgp_peers() {
    assert_eq!(
        errors(&with_peers(vec![peer("p", |s| {
            s.peer_asn = Some(64500);
            s.ebgp_multi_hop = Some(true);
        })])),
        [
            "BGPPeer/metallb-system/p: spec.ebgpMultiHop: is for eBGP sessions, but the peer is in the node's own AS (iBGP); iBGP sessions may span hops without it"
        ]
    );
    ok(&with_peers(vec![peer("p", |s| {
        s.ebgp_multi_hop = Some(true)
    })]));
}

#[test]
fn peer_needs_exactly_one_of_address_and_interface() {
    assert_eq!(
        errors(&with_peers(vec![peer("p", |s| s.peer_address = None)])),
        [
            "BGPPeer/metallb-system/p: spec.peerAddress: one of peerAddress and interface must be set"
        ]
    );
    assert_eq!(
        errors(&with_peers(vec![
            peer("p", |s| s.interface = Some("eth1".into()))
        ])),
        [
            "BGPPeer/metallb-system/p: spec.interface: peerAddress and interface are mutually exclusive: a session goes to an address or is unnumbered over an interface"
        ]
    );
    let config = ok(&with_peers(vec![peer("p", |s| {
        s.peer_address = None;
        s.interface = Some("eth1".into());
    })]));
    assert_eq!(
        config.peers["p"].endpoint,
        PeerEndpoint::Interface("eth1".into())
    );
}

#[test]
fn peer_addresses_must_be_ip_addresses() {
    assert_eq!(
        errors(&with_peers(vec![
            peer("p", |s| s.peer_address = Some("router.example".into()))
        ])),
        ["BGPPeer/metallb-system/p: spec.peerAddress: \"router.example\" is not an IP address"]
    );
    assert_eq!(
        errors(&with_peers(vec![
            peer("p", |s| s.source_address = Some("10.0.0.300".into()))
        ])),
        ["BGPPeer/metallb-system/p: spec.sourceAddress: \"10.0.0.300\" is not an IP address"]
    );
    ok(&with_peers(vec![peer("p", |s| {
        s.peer_address = Some("fc00::1".into());
        s.source_address = Some("fc00::2".into());
    })]));
}

#[test]
fn interface_names_cannot_carry_frr_commands() {
    assert_eq!(
        errors(&with_peers(vec![peer("p", |s| {
            s.peer_address = None;
            s.interface = Some("eth0\n no router bgp".into());
        })])),
        [
            "BGPPeer/metallb-system/p: spec.interface: interface name \"eth0\\n no router bgp\" contains a line break; only printable ASCII without spaces is accepted"
        ]
    );
}

#[test]
fn router_id_must_be_ipv4_form() {
    assert_eq!(
        errors(&with_peers(vec![
            peer("p", |s| s.router_id = Some("fc00::1".into()))
        ])),
        [
            "BGPPeer/metallb-system/p: spec.routerID: \"fc00::1\" is not a router ID: BGP router IDs are written as IPv4 addresses"
        ]
    );
    ok(&with_peers(vec![peer("p", |s| {
        s.router_id = Some("10.10.10.10".into())
    })]));
}

#[test]
fn peer_port_defaults_to_179_and_is_capped() {
    assert_eq!(
        errors(&with_peers(vec![peer("p", |s| s.peer_port = Some(20000))])),
        [
            "BGPPeer/metallb-system/p: spec.peerPort: 20000 is above 16384, the highest port accepted"
        ]
    );
    assert_eq!(
        ok(&with_peers(vec![peer("p", |_| {})])).peers["p"].port,
        179
    );
    assert_eq!(
        ok(&with_peers(vec![peer("p", |s| s.peer_port = Some(1179))])).peers["p"].port,
        1179
    );
}

#[test]
fn hold_time_alone_derives_keepalive_as_a_third() {
    let config = ok(&with_peers(vec![peer("p", |s| {
        s.hold_time = Some("90s".into())
    })]));
    let timers = config.peers["p"].timers.unwrap();
    assert_eq!(
        (timers.hold.as_secs(), timers.keepalive.as_secs()),
        (90, 30)
    );
}

#[test]
fn keepalive_alone_derives_hold_as_three_times() {
    let config = ok(&with_peers(vec![peer("p", |s| {
        s.keepalive_time = Some("10s".into())
    })]));
    let timers = config.peers["p"].timers.unwrap();
    assert_eq!(
        (timers.hold.as_secs(), timers.keepalive.as_secs()),
        (30, 10)
    );
    assert_eq!(
        ok(&with_peers(vec![peer("p", |_| {})])).peers["p"].timers,
        None
    );
}

#[test]
fn hold_time_must_be_zero_or_at_least_three_seconds() {
    assert_eq!(
        errors(&with_peers(vec![
            peer("p", |s| s.hold_time = Some("2s".into()))
        ])),
        [
            "BGPPeer/metallb-system/p: spec.holdTime: \"2s\" is too short: the hold time must be 0 (no keepalives) or at least 3s"
        ]
    );
    assert_eq!(
        errors(&with_peers(vec![
            peer("p", |s| s.keepalive_time = Some("900ms".into()))
        ])),
        [
            "BGPPeer/metallb-system/p: spec.keepaliveTime: \"900ms\" gives a hold time of 2.7s, which is too short: the hold time must be 0 (no keepalives) or at least 3s"
        ]
    );
    ok(&with_peers(vec![peer("p", |s| {
        s.hold_time = Some("3s".into())
    })]));
    ok(&with_peers(vec![peer("p", |s| {
        s.hold_time = Some("0s".into());
        s.keepalive_time = Some("0s".into());
    })]));
}

#[test]
fn keepalive_may_not_exceed_hold() {
    assert_eq!(
        errors(&with_peers(vec![peer("p", |s| {
            s.hold_time = Some("9s".into());
            s.keepalive_time = Some("10s".into());
        })])),
        [
            "BGPPeer/metallb-system/p: spec.keepaliveTime: \"10s\" is longer than the hold time (9s); keepalives must come before the hold time runs out"
        ]
    );
    ok(&with_peers(vec![peer("p", |s| {
        s.hold_time = Some("9s".into());
        s.keepalive_time = Some("9s".into());
    })]));
}

#[test]
fn durations_must_parse_and_not_be_negative() {
    let e = errors(&with_peers(vec![peer("p", |s| {
        s.hold_time = Some("ninety".into())
    })]));
    assert!(e[0].starts_with("BGPPeer/metallb-system/p: spec.holdTime: \"ninety\" is not a duration like 90s, 1m30s or 500ms"), "{e:?}");
    assert_eq!(
        errors(&with_peers(vec![
            peer("p", |s| s.hold_time = Some("-90s".into()))
        ])),
        ["BGPPeer/metallb-system/p: spec.holdTime: \"-90s\" is negative"]
    );
    ok(&with_peers(vec![peer("p", |s| {
        s.hold_time = Some("1m30s".into())
    })]));
}

#[test]
fn connect_time_is_whole_seconds_from_1_to_65535() {
    assert_eq!(
        errors(&with_peers(vec![
            peer("p", |s| s.connect_time = Some("1500ms".into()))
        ])),
        ["BGPPeer/metallb-system/p: spec.connectTime: \"1500ms\" is not a whole number of seconds"]
    );
    assert_eq!(
        errors(&with_peers(vec![
            peer("p", |s| s.connect_time = Some("20h".into()))
        ])),
        ["BGPPeer/metallb-system/p: spec.connectTime: \"20h\" is outside 1s–65535s"]
    );
    let config = ok(&with_peers(vec![peer("p", |s| {
        s.connect_time = Some("5s".into())
    })]));
    assert_eq!(config.peers["p"].connect_time.unwrap().as_secs(), 5);
}

#[test]
fn local_asn_must_be_positive() {
    assert_eq!(
        errors(&with_peers(vec![peer("p", |s| s.local_asn = Some(0))])),
        ["BGPPeer/metallb-system/p: spec.localASN: must be between 1 and 4294967295"]
    );
    ok(&with_peers(vec![peer("p", |s| s.local_asn = Some(65000))]));
}

#[test]
fn local_asn_is_for_ebgp_and_differs_from_both_ends() {
    type Edit = fn(&mut BGPPeerSpec);
    let cases: [(Edit, &str); 4] = [
        (
            |s| {
                s.peer_asn = Some(64500);
                s.local_asn = Some(65000);
            },
            "applies to eBGP sessions only, but the peer is in the node's own AS (iBGP); FRR rejects local-as on iBGP sessions",
        ),
        (
            |s| {
                s.peer_asn = None;
                s.dynamic_asn = Some(crate::api::DynamicAsnMode::Internal);
                s.local_asn = Some(65000);
            },
            "applies to eBGP sessions only, but the peer is in the node's own AS (iBGP); FRR rejects local-as on iBGP sessions",
        ),
        (
            |s| s.local_asn = Some(64500),
            "64500 equals myASN; a local AS must differ from the AS it replaces",
        ),
        (
            |s| s.local_asn = Some(64501),
            "64501 equals peerASN; FRR rejects a local AS equal to the router's AS",
        ),
    ];
    for (edit, reason) in cases {
        assert_eq!(
            errors(&with_peers(vec![peer("p", edit)])),
            [format!("BGPPeer/metallb-system/p: spec.localASN: {reason}")]
        );
    }
}

#[test]
fn vrf_names_are_device_names() {
    assert_eq!(
        errors(&with_peers(vec![
            peer("p", |s| s.vrf = Some("red vrf".into()))
        ])),
        [
            "BGPPeer/metallb-system/p: spec.vrf: VRF name \"red vrf\" contains a space; only printable ASCII without spaces is accepted"
        ]
    );
    assert_eq!(
        ok(&with_peers(vec![peer("p", |s| s.vrf = Some("red".into()))])).peers["p"]
            .vrf
            .as_deref(),
        Some("red")
    );
}

#[test]
fn password_and_password_secret_are_exclusive() {
    let secret_ref = SecretReference {
        name: Some("bgp".into()),
        namespace: None,
    };
    let objects = ClusterObjects {
        peers: vec![peer("p", |s| {
            s.password = Some("x".into());
            s.password_secret = Some(secret_ref.clone());
        })],
        secrets: vec![secret("bgp", "kubernetes.io/basic-auth", Some("pw"))],
        ..Default::default()
    };
    assert_eq!(
        errors(&objects),
        [
            "BGPPeer/metallb-system/p: spec.passwordSecret: password and passwordSecret are mutually exclusive; keep one"
        ]
    );
}

#[test]
fn inline_passwords_cannot_carry_frr_commands() {
    assert_eq!(
        errors(&with_peers(vec![
            peer("p", |s| s.password = Some("pw\nrouter bgp 1".into()))
        ])),
        [
            "BGPPeer/metallb-system/p: spec.password: the password contains a line break; FRR takes the password as one word of printable ASCII"
        ]
    );
    assert_eq!(
        errors(&with_peers(vec![peer("p", |s| {
            s.password = Some("pw bfd".into())
        })])),
        [
            "BGPPeer/metallb-system/p: spec.password: the password contains a space; FRR takes the password as one word of printable ASCII"
        ]
    );
    let config = ok(&with_peers(vec![peer("p", |s| {
        s.password = Some("pass!word#1".into())
    })]));
    let password = config.peers["p"].password.clone().unwrap();
    assert_eq!(password.expose(), "pass!word#1");
    assert_eq!(format!("{password:?} {password}"), "<redacted> <redacted>");
}

#[test]
fn password_secret_is_read_from_a_basic_auth_secret() {
    let with_secret = |s: Option<Secret>| ClusterObjects {
        peers: vec![peer("p", |spec| {
            spec.password_secret = Some(SecretReference {
                name: Some("bgp".into()),
                namespace: None,
            })
        })],
        secrets: s.into_iter().collect(),
        ..Default::default()
    };
    let missing = load(&with_secret(None), &LoadOptions::default()).unwrap_err();
    assert_eq!(
        missing[0].to_string(),
        "BGPPeer/metallb-system/p: spec.passwordSecret.name: Secret \"bgp\" does not exist in namespace \"metallb-system\"; the configuration loads once it is created"
    );
    assert!(missing[0].is_transient());
    assert_eq!(
        errors(&with_secret(Some(secret("bgp", "Opaque", Some("pw"))))),
        [
            "BGPPeer/metallb-system/p: spec.passwordSecret.name: Secret \"bgp\" has type \"Opaque\"; a BGP password Secret must be of type \"kubernetes.io/basic-auth\""
        ]
    );
    assert_eq!(
        errors(&with_secret(Some(secret(
            "bgp",
            "kubernetes.io/basic-auth",
            None
        )))),
        [
            "BGPPeer/metallb-system/p: spec.passwordSecret.name: Secret \"bgp\" has no \"password\" key"
        ]
    );
    assert_eq!(
        errors(&with_secret(Some(secret(
            "bgp",
            "kubernetes.io/basic-auth",
            Some("a\rb")
        )))),
        [
            "BGPPeer/metallb-system/p: spec.passwordSecret.name: Secret \"bgp\": the password contains a carriage return; FRR takes the password as one word of printable ASCII"
        ]
    );
    let config = ok(&with_secret(Some(secret(
        "bgp",
        "kubernetes.io/basic-auth",
        Some("s3cret"),
    ))));
    assert_eq!(
        config.peers["p"].password.as_ref().unwrap().expose(),
        "s3cret"
    );
    assert_eq!(config.peers["p"].password_secret.as_deref(), Some("bgp"));
}

#[test]
fn a_missing_bfd_profile_is_a_transient_error() {
    let objects = with_peers(vec![peer("p", |s| s.bfd_profile = Some("fast".into()))]);
    let e = load(&objects, &LoadOptions::default()).unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "BGPPeer/metallb-system/p: spec.bfdProfile: BFDProfile \"fast\" does not exist; the configuration loads once it is created"
    );
    assert!(e[0].is_transient());
    let objects = ClusterObjects {
        bfd_profiles: vec![bfd("fast", |_| {})],
        ..objects
    };
    ok(&objects);
}

#[test]
fn disable_mp_is_accepted_with_a_deprecation_warning() {
    let objects = with_peers(vec![peer("p", |s| s.disable_mp = Some(true))]);
    ok(&objects);
    assert_eq!(
        warnings(&objects),
        [
            "BGPPeer/metallb-system/p: spec.disableMP: is deprecated and has no effect: IPv4 and IPv6 prefixes always travel in their own address family; use dualStackAddressFamily to send both over one session"
        ]
    );
}

// ---- FRR rules across peers ----

#[test]
fn peers_on_one_node_share_the_router_id() {
    let objects = with_peers(vec![
        peer("a", |s| s.router_id = Some("10.0.0.10".into())),
        peer("b", |s| {
            s.router_id = Some("10.0.0.11".into());
            s.peer_address = Some("10.0.0.2".into());
        }),
    ]);
    assert_eq!(
        errors(&objects),
        [
            "BGPPeer/metallb-system/b: spec.routerID: \"10.0.0.11\" differs from \"10.0.0.10\" of BGPPeer \"a\" and no Node objects were given, so both may apply to the same node; FRR uses one router ID per node"
        ]
    );
}

#[test]
fn peers_on_disjoint_nodes_may_differ() {
    let objects = ClusterObjects {
        peers: vec![
            peer("a", |s| {
                s.router_id = Some("10.0.0.10".into());
                s.my_asn = 64510;
                s.node_selectors = Some(vec![sel(&[("rack", "1")])]);
            }),
            peer("b", |s| {
                s.router_id = Some("10.0.0.11".into());
                s.node_selectors = Some(vec![sel(&[("rack", "2")])]);
            }),
        ],
        nodes: vec![node("n1", &[("rack", "1")]), node("n2", &[("rack", "2")])],
        ..Default::default()
    };
    ok(&objects);
    let mut overlapping = objects.clone();
    overlapping.nodes.push(node("n3", &[]));
    overlapping.peers[1].spec.node_selectors = None;
    assert_eq!(
        errors(&overlapping),
        [
            "BGPPeer/metallb-system/b: spec.routerID: \"10.0.0.11\" differs from \"10.0.0.10\" of BGPPeer \"a\" and both apply to node \"n1\"; FRR uses one router ID per node",
            "BGPPeer/metallb-system/b: spec.myASN: 64500 differs from 64510 of BGPPeer \"a\" in the same VRF, and both apply to node \"n1\"; FRR runs one BGP instance per VRF with one AS number",
            "BGPPeer/metallb-system/b: spec.peerAddress: BGPPeer \"a\" already has a session to 10.0.0.1 in the same VRF, and both apply to node \"n1\"; FRR allows one session per neighbor",
        ]
    );
}

#[test]
fn different_vrfs_may_use_different_asns_and_the_same_address() {
    let objects = with_peers(vec![
        peer("a", |_| {}),
        peer("b", |s| {
            s.my_asn = 64999;
            s.vrf = Some("red".into());
        }),
    ]);
    ok(&objects);
}

// ---- BFDProfile ----

#[test]
fn bfd_profile_values_are_range_checked() {
    let objects = ClusterObjects {
        bfd_profiles: vec![bfd("p", |s| {
            s.receive_interval = Some(5);
            s.transmit_interval = Some(60001);
            s.detect_multiplier = Some(1);
            s.echo_interval = Some(9);
            s.minimum_ttl = Some(255);
        })],
        ..Default::default()
    };
    assert_eq!(
        errors(&objects),
        [
            "BFDProfile/metallb-system/p: spec.receiveInterval: 5 is outside the accepted range 10–60000 ms",
            "BFDProfile/metallb-system/p: spec.transmitInterval: 60001 is outside the accepted range 10–60000 ms",
            "BFDProfile/metallb-system/p: spec.detectMultiplier: 1 is outside the accepted range 2–255",
            "BFDProfile/metallb-system/p: spec.echoInterval: 9 is outside the accepted range 10–60000 ms",
            "BFDProfile/metallb-system/p: spec.minimumTtl: 255 is outside the accepted range 1–254",
        ]
    );
    let objects = ClusterObjects {
        bfd_profiles: vec![bfd("p", |s| {
            s.receive_interval = Some(10);
            s.transmit_interval = Some(60000);
            s.detect_multiplier = Some(2);
            s.echo_interval = Some(10);
            s.minimum_ttl = Some(254);
            s.echo_mode = Some(true);
        })],
        ..Default::default()
    };
    assert!(ok(&objects).bfd_profiles["p"].echo_mode);
}

#[test]
fn bfd_profile_names_fit_frr() {
    let name = "a".repeat(64);
    let objects = ClusterObjects {
        bfd_profiles: vec![bfd(&name, |_| {})],
        ..Default::default()
    };
    assert_eq!(
        errors(&objects),
        [format!(
            "BFDProfile/metallb-system/{name}: metadata.name: BFD profile name \"{name}\" is longer than 63 characters"
        )]
    );
}

#[test]
fn bfd_echo_cannot_serve_ipv6_pools() {
    let objects = ClusterObjects {
        pools: vec![pool("v6", &["fc00::/120"])],
        peers: vec![peer("p", |s| s.bfd_profile = Some("echo".into()))],
        bfd_profiles: vec![bfd("echo", |s| s.echo_mode = Some(true))],
        bgp_advertisements: vec![bgp_ad("ad", |_| {})],
        ..Default::default()
    };
    assert_eq!(
        errors(&objects),
        [
            "BGPAdvertisement/metallb-system/ad: spec.peers: announces IPv6 pool \"v6\" to BGPPeer \"p\", whose BFDProfile \"echo\" enables echo mode, which BFD does not support for IPv6"
        ]
    );
    let mut v4 = objects.clone();
    v4.pools = vec![pool("v4", &["10.0.0.0/24"])];
    ok(&v4);
}

// ---- Community ----

#[test]
fn community_alias_values_must_parse() {
    let objects = ClusterObjects {
        communities: vec![community("c", &[("no-export", "65535:65581x")])],
        ..Default::default()
    };
    assert_eq!(
        errors(&objects),
        [
            "Community/metallb-system/c: spec.communities[0].value: \"65535:65581x\" is not a community: \"65581x\" is not a number"
        ]
    );
    let objects = ClusterObjects {
        communities: vec![community("c", &[("no-export", "65535:65281")])],
        ..Default::default()
    };
    assert_eq!(
        ok(&objects).community_aliases["no-export"],
        BgpCommunity::Standard(65535, 65281)
    );
}

#[test]
fn community_alias_names_are_unique_across_objects() {
    let objects = ClusterObjects {
        communities: vec![
            community("c1", &[("x", "1:1")]),
            community("c2", &[("x", "large:1:2:3")]),
        ],
        ..Default::default()
    };
    assert_eq!(
        errors(&objects),
        [
            "Community/metallb-system/c2: spec.communities[0].name: alias \"x\" is already defined by Community \"c1\"; alias names are unique across Community objects"
        ]
    );
}

// ---- BGPAdvertisement ----

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

// ---- configuration injection: every string that reaches frr.conf ----

/// Values that would add or change FRR commands if they reached frr.conf verbatim.
const INJECTIONS: [&str; 4] = [
    "x\nrouter bgp 1",
    "x y",
    "x bfd",
    "x\r\n neighbor 192.0.2.1 remote-as 1",
];

/// Loads `objects` and returns the fields that have errors.
fn error_fields(objects: &ClusterObjects) -> Vec<String> {
    match load(objects, &LoadOptions::default()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.field.clone()).collect(),
    }
}

fn assert_injection_rejected(field: &str, build: impl Fn(&str) -> ClusterObjects) {
    for bad in INJECTIONS {
        let fields = error_fields(&build(bad));
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{field} = {bad:?} was not rejected (errors on {fields:?})"
        );
    }
}

#[test]
fn injection_through_peer_address_is_rejected() {
    assert_injection_rejected("spec.peerAddress", |bad| {
        with_peers(vec![peer("p", |s| {
            s.peer_address = Some(format!("10.0.0.1{bad}"))
        })])
    });
}

#[test]
fn injection_through_interface_is_rejected() {
    assert_injection_rejected("spec.interface", |bad| {
        with_peers(vec![peer("p", |s| {
            s.peer_address = None;
            s.interface = Some(format!("eth0{bad}"));
        })])
    });
}

#[test]
fn injection_through_source_address_is_rejected() {
    assert_injection_rejected("spec.sourceAddress", |bad| {
        with_peers(vec![peer("p", |s| {
            s.source_address = Some(format!("10.0.0.2{bad}"))
        })])
    });
}

#[test]
fn injection_through_router_id_is_rejected() {
    assert_injection_rejected("spec.routerID", |bad| {
        with_peers(vec![peer("p", |s| {
            s.router_id = Some(format!("10.0.0.2{bad}"))
        })])
    });
}

#[test]
fn injection_through_vrf_is_rejected() {
    assert_injection_rejected("spec.vrf", |bad| {
        with_peers(vec![peer("p", |s| s.vrf = Some(format!("red{bad}")))])
    });
}

#[test]
fn injection_through_password_is_rejected() {
    assert_injection_rejected("spec.password", |bad| {
        with_peers(vec![peer("p", |s| s.password = Some(format!("pw{bad}")))])
    });
}

#[test]
fn injection_through_password_secret_is_rejected() {
    assert_injection_rejected("spec.passwordSecret", |bad| ClusterObjects {
        peers: vec![peer("p", |s| {
            s.password_secret = Some(SecretReference {
                name: Some("bgp".into()),
                namespace: Some("metallb-system".into()),
            })
        })],
        secrets: vec![secret(
            "bgp",
            "kubernetes.io/basic-auth",
            Some(&format!("pw{bad}")),
        )],
        ..Default::default()
    });
}

#[test]
fn injection_through_bfd_profile_reference_is_rejected() {
    assert_injection_rejected("spec.bfdProfile", |bad| ClusterObjects {
        peers: vec![peer("p", |s| s.bfd_profile = Some(format!("fast{bad}")))],
        ..Default::default()
    });
}

#[test]
fn injection_through_bfd_profile_name_is_rejected() {
    assert_injection_rejected("metadata.name", |bad| ClusterObjects {
        bfd_profiles: vec![bfd(&format!("fast{bad}"), |_| {})],
        ..Default::default()
    });
}

#[test]
fn injection_through_advertisement_communities_is_rejected() {
    assert_injection_rejected("spec.communities", |bad| ClusterObjects {
        pools: vec![pool("a", &["10.0.0.0/24"])],
        bgp_advertisements: vec![bgp_ad("ad", |s| {
            s.communities = Some(vec![format!("64500:1{bad}")])
        })],
        ..Default::default()
    });
}

#[test]
fn injection_through_community_alias_values_is_rejected() {
    for bad in INJECTIONS {
        let value = format!("64500:1{bad}");
        let fields = error_fields(&ClusterObjects {
            communities: vec![community("aliases", &[("edge", value.as_str())])],
            ..Default::default()
        });
        assert!(
            fields.iter().any(|f| f.starts_with("spec.communities")),
            "{bad:?}: {fields:?}"
        );
    }
}

#[test]
fn injection_through_pool_addresses_is_rejected() {
    assert_injection_rejected("spec.addresses", |bad| {
        with_pools(vec![pool("a", &[&format!("10.0.0.0/24{bad}")])])
    });
}
