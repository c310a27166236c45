//! BGPPeer: ASNs, addresses, timers, passwords, VRFs, and the FRR rules across peers.

use super::*;

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
