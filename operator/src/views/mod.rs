//! Plain-data views of core Kubernetes objects, read once, as announcing needs them:
//! [`LbService`] from a Service, [`ServingEndpoints`] from its EndpointSlices, [`NodeView`]
//! from a Node.
//!
//! The rules are MetalLB's: a Service is handled when it is `type: LoadBalancer` and its
//! `loadBalancerClass` equals ours (unset unless configured); an endpoint serves when
//! `ready` is unset or true, or `serving` is true (terminating endpoints that still serve
//! count), and has at least one address. Unlike MetalLB, a node whose endpoints all
//! terminate stops counting as one with endpoints while another node has a ready one, as
//! kube-proxy chooses: a drained node is withdrawn while its pods still answer what reaches
//! it, instead of after they are gone. A node is excluded from announcing when it carries
//! the label `node.kubernetes.io/exclude-from-external-load-balancers` or its
//! `NetworkUnavailable` condition is true.

mod endpoints;
mod key;
mod node;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Service};

pub use endpoints::{NodeSet, ServingEndpoints, serving_endpoints, slice_serving};
pub use key::{KeyRef, ServiceKey, key_parts};
pub use node::NodeView;

/// The label that takes a node out of external load balancing.
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// The label every EndpointSlice carries naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The taint an operator puts on a node that is shut down (Kubernetes' non-graceful node
/// shutdown), whatever its value and effect.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";
/// The label the kubelet sets to the node's name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The `ipMode` written with every ingress IP (GA in Kubernetes 1.32): the IP is a virtual
/// IP that the nodes' kube-proxy delivers to the Service's endpoints itself, not the address
/// of a proxy in front of them (`Proxy`).
pub const IP_MODE: &str = "VIP";

/// Whether every `status.loadBalancer.ingress[]` entry that holds an IP says
/// `ipMode: VIP` ([`IP_MODE`]); true when there is none.
pub fn ingress_ip_mode_is_vip(service: &Service) -> bool {
    ingress(service)
        .filter(|i| i.ip.is_some())
        .all(|i| i.ip_mode.as_deref() == Some(IP_MODE))
}

/// `status.loadBalancer.ingress[]` of a Service, in order.
fn ingress(service: &Service) -> impl Iterator<Item = &LoadBalancerIngress> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
}

/// `status.loadBalancer.ingress[].ip` of a Service, in order; entries that are not IPs
/// (hostnames, garbage) are skipped.
pub fn ingress_ips(service: &Service) -> Vec<IpAddr> {
    ingress(service)
        .filter_map(|i| i.ip.as_deref())
        .filter_map(|ip| IpAddr::from_str(ip.trim()).ok())
        .collect()
}

/// Which Services this ferrolb instance handles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceScope {
    /// The `loadBalancerClass` served; `None` serves Services without a class.
    pub load_balancer_class: Option<String>,
}

/// A Service as announcing sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbService {
    /// Namespace and name.
    pub key: ServiceKey,
    /// The Service's labels (for serviceSelectors).
    pub labels: BTreeMap<String, String>,
    /// `spec.type == LoadBalancer`.
    pub is_load_balancer: bool,
    /// `spec.loadBalancerClass`.
    pub load_balancer_class: Option<String>,
    /// `externalTrafficPolicy: Local`.
    pub traffic_policy_local: bool,
    /// `status.loadBalancer.ingress[].ip`, in order; entries that are not IPs are skipped.
    pub ingress: Vec<IpAddr>,
    /// The `allow-shared-ip` sharing key (`metallb.io/` wins over `metallb.universe.tf/`).
    pub sharing_key: Option<String>,
    /// `spec.healthCheckNodePort`: where kube-proxy tells whether it forwards a Local
    /// Service to endpoints on its node.
    pub health_check_node_port: Option<u16>,
}

impl LbService {
    /// Reads the parts of a Service that announcing depends on.
    pub fn from_service(service: &Service) -> LbService {
        let meta = &service.metadata;
        let spec = service.spec.as_ref();
        LbService {
            key: ServiceKey::of(service),
            labels: meta.labels.clone().unwrap_or_default(),
            is_load_balancer: spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"),
            load_balancer_class: spec.and_then(|s| s.load_balancer_class.clone()),
            traffic_policy_local: spec.and_then(|s| s.external_traffic_policy.as_deref())
                == Some("Local"),
            ingress: ingress_ips(service),
            sharing_key: annotation(service, "allow-shared-ip"),
            health_check_node_port: spec
                .and_then(|s| s.health_check_node_port)
                .and_then(|p| u16::try_from(p).ok()),
        }
    }

    /// Whether this instance handles the Service at all.
    pub fn in_scope(&self, scope: &ServiceScope) -> bool {
        self.is_load_balancer && self.load_balancer_class == scope.load_balancer_class
    }
}

/// A MetalLB Service annotation by its suffix: `metallb.io/SUFFIX`, else the deprecated
/// `metallb.universe.tf/SUFFIX`.
pub fn annotation(service: &Service, suffix: &str) -> Option<String> {
    let annotations = service.metadata.annotations.as_ref()?;
    annotations
        .get(&format!("metallb.io/{suffix}"))
        .or_else(|| annotations.get(&format!("metallb.universe.tf/{suffix}")))
        .cloned()
}
