//! BGPAdvertisement and L2Advertisement: how, where and to whom a pool's addresses are announced.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::EmptyStatus;

/// Announces the addresses of the selected pools over BGP.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "BGPAdvertisement",
    plural = "bgpadvertisements",
    namespaced,
    status = "EmptyStatus",
    derive = "PartialEq",
    doc = "BGPAdvertisement announces the addresses of IPAddressPools to BGP peers.",
    printcolumn(
        name = "IPAddressPools",
        type_ = "string",
        json_path = ".spec.ipAddressPools"
    ),
    printcolumn(
        name = "IPAddressPool Selectors",
        type_ = "string",
        json_path = ".spec.ipAddressPoolSelectors"
    ),
    printcolumn(name = "Peers", type_ = "string", json_path = ".spec.peers"),
    printcolumn(
        name = "Node Selectors",
        type_ = "string",
        json_path = ".spec.nodeSelectors",
        priority = 10
    )
)]
#[x_kube(validation = Rule::new(
    "!has(self.serviceSelectors) || size(self.serviceSelectors) == 0 || \
     ((!has(self.aggregationLength) || self.aggregationLength == 32) && \
      (!has(self.aggregationLengthV6) || self.aggregationLengthV6 == 128))"
).message("serviceSelectors and aggregationLength/aggregationLengthV6 are mutually exclusive: an aggregated prefix covers addresses of Services the selectors do not pick"))]
#[serde(rename_all = "camelCase")]
pub struct BGPAdvertisementSpec {
    /// Announce each IPv4 address rolled up into a prefix of this length (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub aggregation_length: Option<i32>,

    /// Announce each IPv6 address rolled up into a prefix of this length (default 128).
    #[serde(
        default,
        rename = "aggregationLengthV6",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 128))]
    pub aggregation_length_v6: Option<i32>,

    /// The LOCAL_PREF attribute; sent to iBGP peers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967295u32))]
    pub local_pref: Option<u32>,

    /// BGP communities: `65000:100`, `large:65000:1:2`, or the name of an alias defined in a
    /// Community object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<Vec<String>>,

    /// Pools to announce, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address_pools: Option<Vec<String>>,

    /// Pools to announce, by label. With neither this nor ipAddressPools, every pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address_pool_selectors: Option<Vec<LabelSelector>>,

    /// Nodes that announce (the next hops the routers see). Empty means every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selectors: Option<Vec<LabelSelector>>,

    /// BGPPeers, by name, that receive the announcements. Empty means every peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<String>>,

    /// Only Services matching one of these selectors are announced. Empty means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selectors: Option<Vec<LabelSelector>>,
}

/// Announces the addresses of the selected pools on the local network with ARP and NDP.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "L2Advertisement",
    plural = "l2advertisements",
    namespaced,
    status = "EmptyStatus",
    derive = "PartialEq",
    doc = "L2Advertisement announces the addresses of IPAddressPools with ARP and NDP.",
    printcolumn(
        name = "IPAddressPools",
        type_ = "string",
        json_path = ".spec.ipAddressPools"
    ),
    printcolumn(
        name = "IPAddressPool Selectors",
        type_ = "string",
        json_path = ".spec.ipAddressPoolSelectors"
    ),
    printcolumn(name = "Interfaces", type_ = "string", json_path = ".spec.interfaces"),
    printcolumn(
        name = "Node Selectors",
        type_ = "string",
        json_path = ".spec.nodeSelectors",
        priority = 10
    )
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Pools to announce, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address_pools: Option<Vec<String>>,

    /// Pools to announce, by label. With neither this nor ipAddressPools, every pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address_pool_selectors: Option<Vec<LabelSelector>>,

    /// Nodes that may announce. Empty means every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selectors: Option<Vec<LabelSelector>>,

    /// Interfaces to announce from. Empty means every suitable interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<String>>,

    /// Only Services matching one of these selectors are announced. Empty means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selectors: Option<Vec<LabelSelector>>,

    /// Soft preferences for the announcing node, among the nodes nodeSelectors allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_node_selectors: Option<Vec<PreferredNodeSelector>>,
}

/// A weighted preference for nodes matching a selector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PreferredNodeSelector {
    /// Added to the score of every node the preference matches; the highest score announces.
    #[schemars(range(min = 1, max = 100))]
    pub weight: i32,
    /// The nodes preferred. An empty selector matches every node.
    pub preference: LabelSelector,
}
