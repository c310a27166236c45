//! The speaker's view of the cluster: reflectors on Services, EndpointSlices, Namespaces,
//! Nodes, and Secrets and every `metallb.io` configuration kind in ferrolb's namespace, raising
//! one change signal (shared helpers with the controller's [`crate::controller::cache`]).
//!
//! EndpointSlices are read from `discovery.k8s.io/v1`. Where the API server does not serve
//! that version (Kubernetes before 1.21), core/v1 Endpoints are watched instead and turned
//! into equivalent slices ([`slices_from_endpoints`]): ready addresses serve, not-ready ones do
//! not, and each keeps its node name. Nothing is read until every watch has listed once.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use kube::{Api, Client};

use crate::cluster::SERVICE_NAME_LABEL;
use crate::config::ClusterObjects;
use crate::controller::cache::{Changes, ConfigStores, from_metadata, full, owned};

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
    nodes: Store<PartialObjectMeta<Node>>,
    this_node: Store<Node>,
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
        node: &str,
        slices_v1: bool,
        changes: &Arc<Changes>,
    ) -> SpeakerCaches {
        use kube::runtime::watcher;
        let this_node = crate::controller::cache::spawn_reflector(
            watcher(
                Api::<Node>::all(client.clone()),
                watcher::Config::default().fields(&format!("metadata.name={node}")),
            ),
            Arc::clone(changes),
        );
        SpeakerCaches {
            services: full(Api::all(client.clone()), changes),
            endpoints: if slices_v1 {
                EndpointSource::Slices(full(Api::all(client.clone()), changes))
            } else {
                EndpointSource::Endpoints(full(Api::all(client.clone()), changes))
            },
            namespaces: full(Api::all(client.clone()), changes),
            nodes: full(Api::all(client.clone()), changes),
            this_node,
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
            self.this_node.wait_until_ready(),
            self.config.ready(),
        );
    }

    /// A copy of everything cached now. The speaker's own Node is the full object (labels,
    /// conditions, addresses); the others carry their metadata.
    pub fn snapshot(&self) -> ClusterObjects {
        let mine = owned(&self.this_node);
        let mut nodes: Vec<Node> = from_metadata(&self.nodes)
            .into_iter()
            .filter(|n| !mine.iter().any(|m| m.metadata.name == n.metadata.name))
            .collect();
        nodes.extend(mine);
        let endpoint_slices = match &self.endpoints {
            EndpointSource::Slices(s) => owned(s),
            EndpointSource::Endpoints(s) => {
                owned(s).iter().flat_map(slices_from_endpoints).collect()
            }
        };
        let mut objects = ClusterObjects {
            namespaces: from_metadata(&self.namespaces),
            nodes,
            services: owned(&self.services),
            endpoint_slices,
            ..ClusterObjects::default()
        };
        self.config.fill(&mut objects);
        objects
    }
}

/// The EndpointSlices equivalent to a core/v1 Endpoints object: one per subset, labelled
/// with the Service's name; ready addresses are ready endpoints, not-ready addresses are
/// neither ready nor serving.
pub fn slices_from_endpoints(endpoints: &Endpoints) -> Vec<EndpointSlice> {
    let meta = &endpoints.metadata;
    let Some(service) = meta.name.clone() else {
        return Vec::new();
    };
    let subsets = endpoints.subsets.as_deref().unwrap_or_default();
    subsets
        .iter()
        .enumerate()
        .map(|(i, subset)| {
            let mut list = Vec::new();
            for (addresses, ready) in [
                (&subset.addresses, true),
                (&subset.not_ready_addresses, false),
            ] {
                for address in addresses.as_deref().unwrap_or_default() {
                    list.push(Endpoint {
                        addresses: vec![address.ip.clone()],
                        node_name: address.node_name.clone(),
                        conditions: Some(EndpointConditions {
                            ready: Some(ready),
                            serving: Some(ready),
                            terminating: None,
                        }),
                        ..Endpoint::default()
                    });
                }
            }
            let family = list.first().map_or("IPv4", |e| {
                if e.addresses[0].contains(':') {
                    "IPv6"
                } else {
                    "IPv4"
                }
            });
            EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{service}-subset-{i}")),
                    namespace: meta.namespace.clone(),
                    labels: Some([(SERVICE_NAME_LABEL.to_string(), service.clone())].into()),
                    ..ObjectMeta::default()
                },
                address_type: family.to_string(),
                endpoints: list,
                ports: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ServiceKey, serving_endpoints};
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset};

    fn address(ip: &str, node: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            node_name: Some(node.into()),
            ..EndpointAddress::default()
        }
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
        let slices = slices_from_endpoints(&endpoints);
        let summary = serving_endpoints(&slices);
        let web = &summary[&ServiceKey::new("shop", "web")];
        assert!(web.any);
        assert_eq!(web.nodes, ["n1".to_string()].into());
    }
}
