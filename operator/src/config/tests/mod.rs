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

mod advertisement;
mod bfd_community;
mod injection;
mod peer;
mod pool;

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
