//! The speaker's view of the cluster: reflectors on Services, EndpointSlices, Namespaces,
//! Nodes, and Secrets and every `metallb.io` configuration kind in ferrolb's namespace, raising
//! one change signal (shared helpers with the controller's [`crate::controller::cache`]).
//!
//! EndpointSlices are read from `discovery.k8s.io/v1`. Where the API server does not serve
//! that version (Kubernetes before 1.21), core/v1 Endpoints are watched instead and summarised
//! the same way ([`crate::cluster::serving_from_endpoints`]): ready addresses serve, not-ready ones do not,
//! and each counts for its node. Nothing is read until every watch has listed once.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use kube::{Api, Client};

use crate::cluster::{
    LbService, ServiceKey, ServingEndpoints, serving_endpoints, serving_from_endpoints,
};
use crate::config::ClusterObjects;
use crate::controller::cache::{Changes, ConfigStores, from_metadata, full, owned, trimmed};

/// Where endpoints come from.
#[derive(Clone, Debug)]
enum EndpointSource {
    Slices(Store<EndpointSlice>),
    Endpoints(Store<Endpoints>),
}

/// The reflector stores the speaker reads.
#[derive(Clone, Debug)]
pub struct SpeakerCaches {
    services: Store<Service>,
    endpoints: EndpointSource,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    nodes: Store<Node>,
    config: ConfigStores,
}

/// Whether the API server serves `discovery.k8s.io/v1` EndpointSlices.
pub async fn serves_endpoint_slices_v1(client: &Client) -> Result<bool, kube::Error> {
    match client.list_api_group_resources("discovery.k8s.io/v1").await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == "endpointslices")),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

impl SpeakerCaches {
    /// Starts every watch. `slices_v1` picks EndpointSlices over core/v1 Endpoints.
    pub fn start(
        client: &Client,
        namespace: &str,
        slices_v1: bool,
        changes: &Arc<Changes>,
    ) -> SpeakerCaches {
        SpeakerCaches {
            services: trimmed(Api::all(client.clone()), changes, trim_service),
            endpoints: if slices_v1 {
                EndpointSource::Slices(trimmed(Api::all(client.clone()), changes, trim_slice))
            } else {
                EndpointSource::Endpoints(trimmed(
                    Api::all(client.clone()),
                    changes,
                    trim_endpoints,
                ))
            },
            namespaces: full(Api::all(client.clone()), changes),
            nodes: trimmed(Api::all(client.clone()), changes, trim_node),
            config: ConfigStores::start(client, namespace, changes),
        }
    }

    /// Waits until every kind has listed once.
    pub async fn ready(&self) {
        let endpoints = async {
            let _ = match &self.endpoints {
                EndpointSource::Slices(s) => s.wait_until_ready().await,
                EndpointSource::Endpoints(s) => s.wait_until_ready().await,
            };
        };
        let _ = futures::join!(
            self.services.wait_until_ready(),
            endpoints,
            self.namespaces.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.config.ready(),
        );
    }

    /// The Services and where their endpoints serve, as announcing reads them, straight
    /// from the caches (no copy of the objects).
    pub fn announcing(&self) -> (Vec<LbService>, BTreeMap<ServiceKey, ServingEndpoints>) {
        let services = self
            .services
            .state()
            .iter()
            .map(|s| LbService::from_service(s))
            .collect();
        let endpoints = match &self.endpoints {
            EndpointSource::Slices(s) => serving_endpoints(s.state().iter().map(AsRef::as_ref)),
            EndpointSource::Endpoints(s) => {
                serving_from_endpoints(s.state().iter().map(AsRef::as_ref))
            }
        };
        (services, endpoints)
    }

    /// A copy of the configuration, Namespaces and Nodes cached now (Services and
    /// endpoints come from [`SpeakerCaches::announcing`]). Nodes are trimmed by [`trim_node`]:
    /// labels, conditions and addresses, which election and gossip seeds read.
    pub fn snapshot(&self) -> ClusterObjects {
        let mut objects = ClusterObjects {
            namespaces: from_metadata(&self.namespaces),
            nodes: owned(&self.nodes),
            ..ClusterObjects::default()
        };
        self.config.fill(&mut objects);
        objects
    }
}

/// Keeps what the speaker reads of a Node ([`crate::cluster::NodeView`]): name, labels,
/// addresses and the type and status of its conditions (not its images, volumes or
/// capacity, which are most of a Node object).
pub fn trim_node(node: &mut Node) {
    let meta = &mut node.metadata;
    meta.owner_references = None;
    meta.annotations = None;
    node.spec = None;
    if let Some(status) = node.status.take() {
        node.status = Some(k8s_openapi::api::core::v1::NodeStatus {
            addresses: status.addresses,
            conditions: status.conditions.map(|list| {
                list.into_iter()
                    .map(|c| k8s_openapi::api::core::v1::NodeCondition {
                        type_: c.type_,
                        status: c.status,
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        });
    }
}

/// Keeps what announcing reads of a Service ([`crate::cluster::LbService`]): name,
/// namespace, labels, the `metallb.*` annotations, type, class, traffic policy and ingress.
/// With 10,000 Services the rest (ports, selectors, cluster IPs, other annotations) would be
/// most of the speaker's memory.
pub fn trim_service(service: &mut Service) {
    let meta = &mut service.metadata;
    meta.owner_references = None;
    meta.finalizers = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations
            .retain(|k, _| k.starts_with("metallb.io/") || k.starts_with("metallb.universe.tf/"));
    }
    if let Some(spec) = service.spec.take() {
        service.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
            type_: spec.type_,
            load_balancer_class: spec.load_balancer_class,
            external_traffic_policy: spec.external_traffic_policy,
            ..Default::default()
        });
    }
    if let Some(status) = service.status.as_mut() {
        status.conditions = None;
        if let Some(ingress) = status
            .load_balancer
            .as_mut()
            .and_then(|lb| lb.ingress.as_mut())
        {
            for entry in ingress {
                entry.ports = None;
                entry.hostname = None;
            }
        }
    }
}

/// Keeps what announcing reads of core/v1 Endpoints: each address's IP and node, ready or
/// not (no target references, host names or ports).
pub fn trim_endpoints(endpoints: &mut Endpoints) {
    endpoints.metadata.owner_references = None;
    for subset in endpoints.subsets.iter_mut().flatten() {
        subset.ports = None;
        for address in subset
            .addresses
            .iter_mut()
            .flatten()
            .chain(subset.not_ready_addresses.iter_mut().flatten())
        {
            address.target_ref = None;
            address.hostname = None;
        }
    }
}

/// Keeps what announcing reads of an EndpointSlice: its Service label, and each endpoint's
/// addresses, conditions and node (no target references, hints or ports).
pub fn trim_slice(slice: &mut EndpointSlice) {
    slice.metadata.owner_references = None;
    slice.ports = None;
    for endpoint in &mut slice.endpoints {
        endpoint.target_ref = None;
        endpoint.hints = None;
        endpoint.hostname = None;
        endpoint.deprecated_topology = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn address(ip: &str, node: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            node_name: Some(node.into()),
            ..EndpointAddress::default()
        }
    }

    #[test]
    fn trimming_keeps_everything_announcing_reads() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "shop", "labels": {"app": "web"},
                "annotations": {
                    "metallb.io/allow-shared-ip": "k",
                    "metallb.universe.tf/address-pool": "p",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "other": "x"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]
            },
            "spec": {
                "type": "LoadBalancer", "loadBalancerClass": "c", "externalTrafficPolicy": "Local",
                "ports": [{"port": 80, "nodePort": 31000}], "selector": {"app": "web"},
                "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"], "ipFamilies": ["IPv4"]
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"ip": "2001:db8::1"}]}}
        }))
        .unwrap();
        let mut trimmed = service.clone();
        crate::controller::cache::slim(&mut trimmed);
        trim_service(&mut trimmed);
        assert_eq!(
            crate::cluster::LbService::from_service(&trimmed),
            crate::cluster::LbService::from_service(&service)
        );
        assert_eq!(
            crate::cluster::annotation(&trimmed, "address-pool").as_deref(),
            Some("p")
        );
        let spec = trimmed.spec.as_ref().unwrap();
        assert!(spec.ports.is_none() && spec.selector.is_none() && spec.cluster_ip.is_none());
        assert!(trimmed.metadata.managed_fields.is_none());
        assert_eq!(trimmed.metadata.annotations.as_ref().unwrap().len(), 2);

        let mut endpoints = Endpoints {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                ..ObjectMeta::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![EndpointAddress {
                    target_ref: Some(Default::default()),
                    hostname: Some("pod".into()),
                    ..address("10.244.1.5", "n1")
                }]),
                not_ready_addresses: Some(vec![address("10.244.2.5", "n2")]),
                ports: Some(vec![Default::default()]),
            }]),
        };
        let before = serving_from_endpoints([&endpoints]);
        assert_eq!(
            before[&ServiceKey::new("shop", "web")].nodes,
            ["n1".to_string()].into()
        );
        trim_endpoints(&mut endpoints);
        assert_eq!(serving_from_endpoints([&endpoints]), before);
        let subset = &endpoints.subsets.as_ref().unwrap()[0];
        assert!(subset.ports.is_none());
        assert!(subset.addresses.as_ref().unwrap()[0].target_ref.is_none());
    }

    #[test]
    fn core_endpoints_serve_where_their_ready_addresses_are() {
        let endpoints = Endpoints {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                ..ObjectMeta::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![address("10.244.1.5", "n1")]),
                not_ready_addresses: Some(vec![address("10.244.2.5", "n2")]),
                ports: None,
            }]),
        };
        let summary = serving_from_endpoints([&endpoints]);
        let web = &summary[&ServiceKey::new("shop", "web")];
        assert!(web.any);
        assert_eq!(web.nodes, ["n1".to_string()].into());
    }
}
