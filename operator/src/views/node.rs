//! [`NodeView`]: a Node as announcing sees it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Node;

use super::{EXCLUDE_LABEL, HOSTNAME_LABEL, OUT_OF_SERVICE_TAINT};

/// A node as announcing sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// The node's labels.
    pub labels: BTreeMap<String, String>,
    /// Labelled `node.kubernetes.io/exclude-from-external-load-balancers`.
    pub excluded: bool,
    /// Condition `NetworkUnavailable` is true.
    pub network_unavailable: bool,
    /// `status.addresses` that are IPs (InternalIP, ExternalIP), in order.
    pub addresses: Vec<IpAddr>,
    /// Condition `Ready` is there and not true (the kubelet reported trouble, or stopped
    /// reporting).
    pub not_ready: bool,
    /// Tainted [`OUT_OF_SERVICE_TAINT`]: an operator declared the node down (non-graceful
    /// node shutdown), so it announces nothing and answers for no layer-2 IP.
    pub out_of_service: bool,
}

impl NodeView {
    /// A node known only by name: the kubelet's hostname label, nothing else.
    pub fn named(name: &str) -> NodeView {
        NodeView {
            name: name.to_string(),
            labels: [(HOSTNAME_LABEL.to_string(), name.to_string())].into(),
            ..NodeView::default()
        }
    }

    /// Reads a Node object.
    pub fn from_node(node: &Node) -> NodeView {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let status = node.status.as_ref();
        let network_unavailable = status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "NetworkUnavailable" && c.status == "True")
        });
        let not_ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status != "True"));
        let addresses = status
            .and_then(|s| s.addresses.as_ref())
            .map(|list| {
                list.iter()
                    .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
                    .filter_map(|a| IpAddr::from_str(&a.address).ok())
                    .collect()
            })
            .unwrap_or_default();
        let out_of_service = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT));
        NodeView {
            name: node.metadata.name.clone().unwrap_or_default(),
            excluded: labels.contains_key(EXCLUDE_LABEL),
            labels,
            network_unavailable,
            addresses,
            not_ready,
            out_of_service,
        }
    }
}
