//! BFDProfile and Community.

use super::*;

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
