//! Test fixtures for the FRR modules: a node's model built from manifests as its speaker
//! builds it, and the manifests of the objects that shape it.

use super::model::FrrConfig;
use crate::config::{self, LoadOptions};
use crate::frr::{self, NodeFacts};
use crate::views::ServiceScope;
use crate::{dry_run, manifest};

/// A node's model from manifests, as its speaker would build it (Services without
/// EndpointSlices serve everywhere).
pub(crate) fn model(yaml: &str) -> FrrConfig {
    let parsed = manifest::parse(yaml, "test", "metallb-system").expect("parses");
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let config = config::load(&parsed.objects, &LoadOptions::default()).expect("valid");
    let node = dry_run::prepare(config, &parsed.objects, "node-a", ServiceScope::default());
    frr::build(
        &node.config,
        &node.intent(),
        &node.node,
        NodeFacts::default(),
    )
    .expect("names are words")
}

pub(crate) fn pool(name: &str, cidr: &str) -> String {
    format!(
        "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}}}\nspec: {{addresses: [\"{cidr}\"]}}\n"
    )
}

pub(crate) fn peer(name: &str, address: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {{myASN: 64512, peerASN: 64513, peerAddress: {address}{spec}}}\n"
    )
}

pub(crate) fn advertisement(name: &str, pool: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: {name}}}\nspec: {{ipAddressPools: [{pool}]{spec}}}\n"
    )
}

pub(crate) fn bfd(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n"
    )
}

pub(crate) fn service(name: &str, ip: &str, labels: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: web, labels: {{{labels}}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}\nstatus: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}\n"
    )
}
