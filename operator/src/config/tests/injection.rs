//! Configuration injection: every string that reaches frr.conf.

use super::*;

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
