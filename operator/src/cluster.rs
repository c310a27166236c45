//! What the announcing side needs from core Kubernetes objects, read once into plain data:
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that takes a node out of external load balancing.
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// The label every EndpointSlice carries naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The taint an operator puts on a node that is shut down (Kubernetes' non-graceful node
/// shutdown), whatever its value and effect.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";
/// The label the kubelet sets to the node's name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// `namespace/name` of a Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ServiceKey {
    /// Builds a key.
    pub fn new(namespace: &str, name: &str) -> Self {
        ServiceKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The key of a Service object (namespace `default` when unset).
    pub fn of(service: &Service) -> Self {
        ServiceKey::new(
            service.metadata.namespace.as_deref().unwrap_or("default"),
            service.metadata.name.as_deref().unwrap_or_default(),
        )
    }
}

/// A `namespace/name` that may be borrowed: maps keyed by [`ServiceKey`] are looked up with
/// `&(namespace, name) as &dyn KeyRef` without building (and allocating) a key. Hash, order
/// and equality are those of [`ServiceKey`].
pub trait KeyRef {
    /// Namespace and name.
    fn parts(&self) -> (&str, &str);
}

impl KeyRef for ServiceKey {
    fn parts(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }
}

impl KeyRef for (&str, &str) {
    fn parts(&self) -> (&str, &str) {
        (self.0, self.1)
    }
}

impl<'a> std::borrow::Borrow<dyn KeyRef + 'a> for ServiceKey {
    fn borrow(&self) -> &(dyn KeyRef + 'a) {
        self
    }
}

impl std::hash::Hash for dyn KeyRef + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As the derived Hash of ServiceKey: each String hashes as its str.
        let (namespace, name) = self.parts();
        namespace.hash(state);
        name.hash(state);
    }
}

impl PartialEq for dyn KeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyRef + '_ {}

impl PartialOrd for dyn KeyRef + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn KeyRef + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts().cmp(&other.parts())
    }
}

/// Namespace (`default` when unset) and name of a Service, borrowed.
pub fn key_parts(service: &Service) -> (&str, &str) {
    (
        service.metadata.namespace.as_deref().unwrap_or("default"),
        service.metadata.name.as_deref().unwrap_or_default(),
    )
}

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

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
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

/// A set of node names: sorted and without repeats, each name shared with every other set
/// naming that node. A Service's endpoints usually sit on a few nodes, and the speaker keeps
/// such a set per Service and per EndpointSlice; a `BTreeSet<String>` costs a 280-byte node
/// and a copy of each name, this costs one small array of pointers.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeSet(Vec<Arc<str>>);

/// The one shared copy of a node name. Names no set uses any more are dropped when the table
/// has doubled since it was last swept.
fn node_name(name: &str) -> Arc<str> {
    static NAMES: Mutex<(BTreeSet<Arc<str>>, usize)> = Mutex::new((BTreeSet::new(), 0));
    let mut guard = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (names, swept) = &mut *guard;
    if let Some(shared) = names.get(name) {
        return Arc::clone(shared);
    }
    if names.len() >= (*swept * 2).max(64) {
        names.retain(|n| Arc::strong_count(n) > 1);
        *swept = names.len();
    }
    let shared: Arc<str> = Arc::from(name);
    names.insert(Arc::clone(&shared));
    shared
}

impl NodeSet {
    /// Whether `node` is in the set.
    pub fn contains(&self, node: &str) -> bool {
        self.0.binary_search_by(|n| (**n).cmp(node)).is_ok()
    }

    /// Adds `node`.
    pub fn insert(&mut self, node: &str) {
        if let Err(at) = self.0.binary_search_by(|n| (**n).cmp(node)) {
            self.0.insert(at, node_name(node));
        }
    }

    /// Adds every node of `other`.
    pub fn extend(&mut self, other: &NodeSet) {
        for node in &other.0 {
            if let Err(at) = self.0.binary_search(node) {
                self.0.insert(at, Arc::clone(node));
            }
        }
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|n| &**n)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many nodes the set holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<S: AsRef<str>> FromIterator<S> for NodeSet {
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> NodeSet {
        let mut set = NodeSet::default();
        for name in names {
            set.insert(name.as_ref());
        }
        set.0.shrink_to_fit();
        set
    }
}

/// Where a Service has endpoints that can take traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServingEndpoints {
    /// Nodes hosting at least one serving endpoint (ready or terminating).
    pub nodes: NodeSet,
    /// Nodes hosting at least one ready endpoint (a subset of `nodes`).
    pub ready: NodeSet,
    /// Whether any serving endpoint exists, on a known node or not.
    pub any: bool,
}

impl ServingEndpoints {
    /// Whether `node` counts as having the Service's endpoints: it has a ready one, or it
    /// has a terminating one that still serves and no node has a ready one.
    pub fn on_node(&self, node: &str) -> bool {
        if self.ready.is_empty() {
            self.nodes.contains(node)
        } else {
            self.ready.contains(node)
        }
    }

    /// Adds what another part of the same Service's endpoints (another slice) says.
    pub fn merge(&mut self, other: &ServingEndpoints) {
        self.any |= other.any;
        self.nodes.extend(&other.nodes);
        self.ready.extend(&other.ready);
    }
}

/// One EndpointSlice's Service and where its endpoints serve; `None` for a slice without
/// the `kubernetes.io/service-name` label.
pub fn slice_serving(slice: &EndpointSlice) -> Option<(ServiceKey, ServingEndpoints)> {
    let meta = &slice.metadata;
    let service = meta.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let key = ServiceKey::new(meta.namespace.as_deref().unwrap_or("default"), service);
    let mut out = ServingEndpoints::default();
    for endpoint in &slice.endpoints {
        let conditions = endpoint.conditions.as_ref();
        let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
        let serving = conditions.and_then(|c| c.serving).unwrap_or(false);
        if !(ready || serving) || endpoint.addresses.is_empty() {
            continue;
        }
        out.any = true;
        if let Some(node) = &endpoint.node_name {
            out.nodes.insert(node);
            // `ready` is false for a terminating endpoint, whatever its probes say.
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            if ready && !terminating {
                out.ready.insert(node);
            }
        }
    }
    out.nodes.0.shrink_to_fit();
    out.ready.0.shrink_to_fit();
    Some((key, out))
}

fn group(
    parts: impl Iterator<Item = (ServiceKey, ServingEndpoints)>,
) -> BTreeMap<ServiceKey, ServingEndpoints> {
    let mut out: BTreeMap<ServiceKey, ServingEndpoints> = BTreeMap::new();
    for (key, part) in parts {
        out.entry(key).or_default().merge(&part);
    }
    out
}

/// Groups EndpointSlices by the Service they belong to and summarises where endpoints serve.
pub fn serving_endpoints<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> BTreeMap<ServiceKey, ServingEndpoints> {
    group(slices.into_iter().filter_map(slice_serving))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn endpoint(node: &str, ready: Option<bool>, serving: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: vec!["10.244.0.5".into()],
            node_name: Some(node.into()),
            conditions: Some(EndpointConditions {
                ready,
                serving,
                terminating: serving.map(|_| ready == Some(false)),
            }),
            ..Endpoint::default()
        }
    }

    fn slice(service: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some("web".into()),
                name: Some(format!("{service}-abcde")),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), service.to_string())].into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints,
            ports: None,
        }
    }

    #[test]
    fn ready_unset_ready_true_and_terminating_serving_endpoints_serve() {
        let summary = serving_endpoints(&[
            slice(
                "a",
                vec![
                    endpoint("n1", None, None),
                    endpoint("n2", Some(true), None),
                    endpoint("n3", Some(false), Some(true)),
                    endpoint("n4", Some(false), Some(false)),
                ],
            ),
            slice("b", vec![endpoint("n1", Some(false), None)]),
        ]);
        let a = &summary[&ServiceKey::new("web", "a")];
        assert_eq!(a.nodes.iter().collect::<Vec<_>>(), ["n1", "n2", "n3"]);
        assert!(a.any);
        let b = &summary[&ServiceKey::new("web", "b")];
        assert!(!b.any && b.nodes.is_empty());
    }

    #[test]
    fn terminating_endpoints_count_only_while_no_node_has_a_ready_one() {
        // A drain: n2's pod terminates (still serving) while n1's is ready.
        let draining = serving_endpoints(&[slice(
            "a",
            vec![
                endpoint("n1", Some(true), Some(true)),
                endpoint("n2", Some(false), Some(true)),
            ],
        )]);
        let a = &draining[&ServiceKey::new("web", "a")];
        assert!(a.on_node("n1") && !a.on_node("n2"));
        assert!(a.nodes.contains("n2") && !a.ready.contains("n2") && a.ready.contains("n1"));
        // The last pods terminating: their nodes keep it until they stop serving.
        let last = serving_endpoints(&[slice("a", vec![endpoint("n2", Some(false), Some(true))])]);
        let a = &last[&ServiceKey::new("web", "a")];
        assert!(a.on_node("n2") && a.ready.is_empty());
        // Ready in another slice of the same Service counts too.
        let mut split =
            serving_endpoints(&[slice("a", vec![endpoint("n2", Some(false), Some(true))])]);
        let other = serving_endpoints(&[slice("a", vec![endpoint("n1", None, None)])]);
        split
            .get_mut(&ServiceKey::new("web", "a"))
            .unwrap()
            .merge(&other[&ServiceKey::new("web", "a")]);
        assert!(!split[&ServiceKey::new("web", "a")].on_node("n2"));
    }

    #[test]
    fn node_sets_are_sorted_without_repeats_and_share_names() {
        let mut a: NodeSet = ["n3", "n1", "n3"].into_iter().collect();
        assert_eq!(a.iter().collect::<Vec<_>>(), ["n1", "n3"]);
        let b: NodeSet = ["n2", "n1"].into_iter().collect();
        a.extend(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), ["n1", "n2", "n3"]);
        assert!(a.contains("n2") && !a.contains("n4") && a.len() == 3);
        // One copy of each name, however many sets hold it.
        assert!(Arc::ptr_eq(&a.0[0], &b.0[0]));
        let mut c = NodeSet::default();
        assert!(c.is_empty());
        c.insert("n1");
        assert!(Arc::ptr_eq(&c.0[0], &a.0[0]));
    }

    #[test]
    fn endpoints_without_addresses_do_not_serve() {
        let mut e = endpoint("n1", Some(true), None);
        e.addresses.clear();
        let summary = serving_endpoints(&[slice("a", vec![e])]);
        assert!(!summary[&ServiceKey::new("web", "a")].any);
    }

    #[test]
    fn only_load_balancers_of_our_class_are_in_scope() {
        let mut service = Service::default();
        let lb = |s: &Service| LbService::from_service(s);
        assert!(!lb(&service).in_scope(&ServiceScope::default()));
        service.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ..Default::default()
        });
        assert!(lb(&service).in_scope(&ServiceScope::default()));
        let ours = ServiceScope {
            load_balancer_class: Some("ferrolb".into()),
        };
        assert!(!lb(&service).in_scope(&ours));
        if let Some(spec) = service.spec.as_mut() {
            spec.load_balancer_class = Some("ferrolb".into());
        }
        assert!(lb(&service).in_scope(&ours));
        assert!(!lb(&service).in_scope(&ServiceScope::default()));
    }

    #[test]
    fn ingress_entries_that_are_not_ips_are_dropped() {
        use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
        let ingress = |ip: &str| LoadBalancerIngress {
            ip: Some(ip.into()),
            ..Default::default()
        };
        let service = Service {
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(vec![
                        ingress("198.51.100.10\nrouter bgp 1"),
                        ingress("198.51.100.11"),
                        ingress("2001:db8::1 bfd"),
                    ]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ips: Vec<String> = LbService::from_service(&service)
            .ingress
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["198.51.100.11"]);
    }

    #[test]
    fn the_out_of_service_taint_marks_a_node_whatever_its_value_and_effect() {
        use k8s_openapi::api::core::v1::{NodeSpec, Taint};
        let node = |taints: Vec<Taint>| Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            ..Default::default()
        };
        let taint = |key: &str, value: Option<&str>, effect: &str| Taint {
            key: key.into(),
            value: value.map(str::to_string),
            effect: effect.into(),
            ..Default::default()
        };
        assert!(
            NodeView::from_node(&node(vec![taint(
                OUT_OF_SERVICE_TAINT,
                Some("nodeshutdown"),
                "NoExecute"
            )]))
            .out_of_service
        );
        assert!(
            NodeView::from_node(&node(vec![taint(OUT_OF_SERVICE_TAINT, None, "NoSchedule")]))
                .out_of_service
        );
        assert!(
            !NodeView::from_node(&node(vec![taint(
                "node.kubernetes.io/unschedulable",
                None,
                "NoSchedule"
            )]))
            .out_of_service
        );
    }
}
