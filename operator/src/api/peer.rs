//! BGPPeer: a BGP session that each selected node's FRR opens to a router.
//!
//! `v1beta2` is the stored version and the Rust type. `v1beta1` is served from the same
//! schema, marked deprecated, with MetalLB's v1beta1 required fields; every v1beta1 field has
//! the same name, type and meaning in v1beta2, so the apiserver can serve either version of a
//! stored object by changing only `apiVersion` (`conversion.strategy: None`). This removes the
//! conversion webhook and its certificates from the path of every GitOps sync.

use k8s_openapi::api::core::v1::SecretReference;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::EmptyStatus;

/// The fields MetalLB's v1beta1 BGPPeer requires.
pub const V1BETA1_REQUIRED: [&str; 3] = ["myASN", "peerASN", "peerAddress"];

/// The warning the apiserver returns to clients that use the v1beta1 version.
pub const V1BETA1_DEPRECATION: &str =
    "metallb.io/v1beta1 BGPPeer is deprecated; use metallb.io/v1beta2 (same fields, no conversion)";

/// A BGP session from the selected nodes to a router.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta2",
    kind = "BGPPeer",
    plural = "bgppeers",
    namespaced,
    status = "EmptyStatus",
    derive = "PartialEq",
    doc = "BGPPeer is a BGP session that the selected nodes open to a router.",
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.peerAddress"),
    printcolumn(name = "ASN", type_ = "string", json_path = ".spec.peerASN"),
    printcolumn(name = "BFD Profile", type_ = "string", json_path = ".spec.bfdProfile"),
    printcolumn(
        name = "Multi Hops",
        type_ = "string",
        json_path = ".spec.ebgpMultiHop"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// The AS number of the node's end of the session.
    #[serde(rename = "myASN")]
    #[schemars(range(min = 0, max = 4294967295u32))]
    pub my_asn: u32,

    /// The AS number expected from the router. Exactly one of peerASN and dynamicASN is set.
    #[serde(default, rename = "peerASN", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967295u32))]
    pub peer_asn: Option<u32>,

    /// Accept the router's AS number as long as it is internal (equal to myASN) or external
    /// (different). Exactly one of peerASN and dynamicASN is set.
    #[serde(
        default,
        rename = "dynamicASN",
        skip_serializing_if = "Option::is_none"
    )]
    pub dynamic_asn: Option<DynamicAsnMode>,

    /// The AS number presented to the router instead of myASN (FRR `local-as ... no-prepend replace-as`).
    #[serde(default, rename = "localASN", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub local_asn: Option<u32>,

    /// The router's address. Exactly one of peerAddress and interface is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_address: Option<String>,

    /// The node interface for an unnumbered session. Exactly one of peerAddress and interface is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,

    /// The node address the session is opened from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<String>,

    /// The router's TCP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16384), extend("default" = 179))]
    pub peer_port: Option<u16>,

    /// Requested hold time (for example `90s`). Without keepaliveTime, keepalive is a third of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<String>,

    /// Requested keepalive interval. Without holdTime, hold is three times it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,

    /// How long to wait between connection attempts: whole seconds, 1s to 65535s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535")
            .message("connectTime must be between 1s and 65535s"),
        validation = Rule::new("duration(self).getMilliseconds() % 1000 == 0")
            .message("connectTime must be a whole number of seconds")
    )]
    pub connect_time: Option<String>,

    /// The BGP router ID announced to the router (IPv4 address form).
    #[serde(default, rename = "routerID", skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,

    /// The session is opened only from nodes matching one of these. Empty means every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selectors: Option<Vec<LabelSelector>>,

    /// TCP MD5 password. Prefer passwordSecret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,

    /// A Secret of type kubernetes.io/basic-auth in the ferrolb namespace whose `password` key
    /// holds the TCP MD5 password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretReference>,

    /// The BFDProfile for this session's BFD. Without it, no BFD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd_profile: Option<String>,

    /// Keep forwarding along known routes while a session restarts. Fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("enableGracefulRestart cannot be changed after creation"))]
    pub enable_graceful_restart: Option<bool>,

    /// The router is more than one hop away (eBGP multi-hop).
    #[serde(
        default,
        rename = "ebgpMultiHop",
        skip_serializing_if = "Option::is_none"
    )]
    pub ebgp_multi_hop: Option<bool>,

    /// The Linux VRF whose interfaces reach the router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf: Option<String>,

    /// Deprecated and without effect: IPv4 and IPv6 are always separate address families.
    #[serde(default, rename = "disableMP", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub disable_mp: Option<bool>,

    /// Activate both address families on the session: IPv4 prefixes over an IPv6 session and
    /// the reverse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub dual_stack_address_family: Option<bool>,
}

/// How the router's AS number is checked when peerASN is not given.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DynamicAsnMode {
    /// The router must be in myASN (iBGP).
    Internal,
    /// The router must not be in myASN (eBGP).
    External,
}

/// The BGPPeer CRD with both versions served, v1beta2 stored, and no conversion webhook.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = BGPPeer::crd();
    let v1beta2 = crd.spec.versions[0].clone();
    let mut v1beta1 = v1beta2.clone();
    v1beta1.name = "v1beta1".to_string();
    v1beta1.storage = false;
    v1beta1.served = true;
    v1beta1.deprecated = Some(true);
    v1beta1.deprecation_warning = Some(V1BETA1_DEPRECATION.to_string());
    if let Some(spec) = v1beta1
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .and_then(|s| s.properties.as_mut())
        .and_then(|p| p.get_mut("spec"))
    {
        spec.required = Some(V1BETA1_REQUIRED.iter().map(|s| s.to_string()).collect());
    }
    crd.spec.versions = vec![v1beta1, v1beta2];
    crd.spec.conversion = Some(CustomResourceConversion {
        strategy: "None".to_string(),
        webhook: None,
    });
    crd
}
