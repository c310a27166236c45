//! Test fixtures for the FRR modules: a node's model built from manifests as its speaker
//! builds it, and the manifests of the objects that shape it.

use super::model::FrrConfig;
use crate::config::{self, LoadOptions};
use crate::frr::{self, NodeFacts};
use crate::views::ServiceScope;
use crate::{dry_run, fixtures, manifest};

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

/// An IPAddressPool of one CIDR.
pub(crate) fn pool(name: &str, cidr: &str) -> String {
    fixtures::pool(name, &format!("{{addresses: [\"{cidr}\"]}}"))
}

/// An eBGP BGPPeer (64512 to 64513) at `address`, with `spec` appended to its fields.
pub(crate) fn peer(name: &str, address: &str, spec: &str) -> String {
    fixtures::peer(
        name,
        &format!("{{myASN: 64512, peerASN: 64513, peerAddress: {address}{spec}}}"),
    )
}

/// A BGPAdvertisement of `pool`, with `spec` appended to its fields.
pub(crate) fn advertisement(name: &str, pool: &str, spec: &str) -> String {
    fixtures::bgp_advertisement(name, &format!("{{ipAddressPools: [{pool}]{spec}}}"))
}

/// A BFDProfile with the fields `spec`.
pub(crate) fn bfd(name: &str, spec: &str) -> String {
    fixtures::bfd_profile(name, &format!("{{{spec}}}"))
}

/// A LoadBalancer Service in namespace `web` holding `ip`, with `labels`.
pub(crate) fn service(name: &str, ip: &str, labels: &str) -> String {
    fixtures::service(
        "web",
        name,
        &format!(", labels: {{{labels}}}"),
        &format!(
            "spec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}\nstatus: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}"
        ),
    )
}
