//! The speaker's view of the cluster. Services and EndpointSlices come as changes
//! ([`super::feed`]): each is reduced on arrival to what announcing reads (an [`LbService`],
//! where its endpoints serve), and no Service or endpoint object is kept. Namespaces, Nodes,
//! and Secrets and every `metallb.io` configuration kind in ferrolb's namespace are cached
//! by reflectors ([`crate::shell::watch`], as the controller's are). Every
//! event raises one change signal.
//!
//! EndpointSlices are read from `discovery.k8s.io/v1` (Kubernetes 1.21 and newer; the speaker
//! refuses to start where it is not served). Nothing is read until every watch has listed
//! once.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource};

use super::feed::{EndpointPart, Feed, ObjectKey, Pending};
use crate::config::ClusterObjects;
use crate::shell::watch::{Changes, ConfigStores, from_metadata, full, owned, trimmed};
use crate::views::{LbService, ServiceKey, slice_serving};

/// The speaker's caches: changes of Services and endpoints (see [`super::feed`]), and
/// stores of the rest.
#[derive(Clone, Debug)]
pub(crate) struct SpeakerCaches {
    services: Arc<Feed<ServiceKey, LbService>>,
    endpoints: Arc<Feed<ObjectKey, EndpointPart>>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    nodes: Store<Node>,
    config: ConfigStores,
}

/// Whether the API server serves `discovery.k8s.io/v1` EndpointSlices.
pub(crate) async fn serves_endpoint_slices_v1(client: &Client) -> Result<bool, kube::Error> {
    match client.list_api_group_resources("discovery.k8s.io/v1").await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == "endpointslices")),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// `namespace/name` of any namespaced object.
fn object_key<K: Resource>(object: &K) -> ObjectKey {
    let meta = object.meta();
    ServiceKey::new(
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// The Services and endpoint objects that changed since the last [`SpeakerCaches::take`].
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// Services, as announcing reads them.
    pub services: Pending<ServiceKey, LbService>,
    /// EndpointSlices: their Service and where they serve.
    pub endpoints: Pending<ObjectKey, EndpointPart>,
}

impl SpeakerCaches {
    /// Starts every watch.
    pub(crate) fn start(client: &Client, namespace: &str, changes: &Arc<Changes>) -> SpeakerCaches {
        SpeakerCaches {
            services: Feed::start(
                Api::<Service>::all(client.clone()),
                ServiceKey::of,
                |s| Some(LbService::from_service(s)),
                changes,
            ),
            endpoints: Feed::start(
                Api::<EndpointSlice>::all(client.clone()),
                object_key,
                serving_part,
                changes,
            ),
            namespaces: full(Api::all(client.clone()), changes),
            nodes: trimmed(Api::all(client.clone()), changes, trim_node),
            config: ConfigStores::start(client, namespace, changes),
        }
    }

    /// Waits until every kind has listed once.
    pub(crate) async fn ready(&self) {
        let _ = futures::join!(
            self.services.ready(),
            self.endpoints.ready(),
            self.namespaces.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.config.ready(),
        );
    }

    /// What changed in Services and endpoints since the last call.
    pub(crate) fn take(&self) -> Taken {
        Taken {
            services: self.services.take(),
            endpoints: self.endpoints.take(),
        }
    }

    /// A copy of the configuration, Namespaces and Nodes cached now (Services and
    /// endpoints come from [`SpeakerCaches::take`]). Nodes are trimmed by [`trim_node`]:
    /// labels, conditions and addresses, which election and gossip seeds read.
    pub(crate) fn snapshot(&self) -> ClusterObjects {
        let mut objects = ClusterObjects {
            namespaces: from_metadata(&self.namespaces),
            nodes: owned(&self.nodes),
            ..ClusterObjects::default()
        };
        self.config.fill(&mut objects);
        objects
    }
}

/// What a slice adds to its Service's endpoints, or `None` when it adds nothing: a slice with
/// no serving endpoint (as kube-controller-manager keeps for every Service whose selector
/// matches no pod yet) counts as absent, since announcing treats "no endpoints" and "none
/// serving" alike. The speaker then keeps nothing for the thousands of such slices.
fn serving_part(slice: &EndpointSlice) -> Option<EndpointPart> {
    slice_serving(slice).filter(|(_, serving)| serving.any)
}

/// Keeps what the speaker reads of a Node ([`crate::views::NodeView`]): name, labels,
/// addresses, the type and status of its conditions and its out-of-service taint (not its
/// images, volumes or capacity, which are most of a Node object).
pub(crate) fn trim_node(node: &mut Node) {
    let meta = &mut node.metadata;
    meta.owner_references = None;
    meta.annotations = None;
    let out_of_service: Vec<_> = node
        .spec
        .take()
        .and_then(|spec| spec.taints)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key == crate::views::OUT_OF_SERVICE_TAINT)
        .collect();
    if !out_of_service.is_empty() {
        node.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(out_of_service),
            ..Default::default()
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_keyed_by_themselves_and_name_their_service() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-x1", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": "n2"}]
        }))
        .unwrap();
        assert_eq!(object_key(&slice), ServiceKey::new("shop", "web-x1"));
        let (service, serving) = slice_serving(&slice).unwrap();
        assert_eq!(service, ServiceKey::new("shop", "web"));
        assert_eq!(serving.nodes.iter().collect::<Vec<_>>(), ["n2"]);
        assert!(serving_part(&slice).is_some());
    }

    #[test]
    fn a_trimmed_node_keeps_what_announcing_reads() {
        let mut node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "labels": {"zone": "a"}, "annotations": {"big": "x"}},
            "spec": {"podCIDR": "10.244.1.0/24", "taints": [
                {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown",
                 "effect": "NoExecute"},
                {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
            ]},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.11"}],
                "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletDown",
                                "message": "long text"}],
                "images": [{"names": ["busybox"], "sizeBytes": 1}]
            }
        }))
        .unwrap();
        let before = crate::views::NodeView::from_node(&node);
        trim_node(&mut node);
        assert_eq!(crate::views::NodeView::from_node(&node), before);
        assert!(before.out_of_service && before.not_ready);
        let spec = node.spec.as_ref().unwrap();
        assert_eq!(spec.taints.as_ref().map(Vec::len), Some(1));
        assert!(spec.pod_cidr.is_none() && node.metadata.annotations.is_none());
        assert!(node.status.as_ref().unwrap().images.is_none());
    }

    #[test]
    fn slices_with_nothing_serving_are_kept_as_absent() {
        let slice = |endpoints: serde_json::Value| -> EndpointSlice {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web-abcde", "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": endpoints
            }))
            .unwrap()
        };
        // As kube-controller-manager writes it for a Service whose selector matches no pod.
        assert!(serving_part(&slice(serde_json::json!([]))).is_none());
        let gone = serde_json::json!([{"addresses": ["10.244.1.5"], "nodeName": "n1",
            "conditions": {"ready": false, "serving": false, "terminating": true}}]);
        assert!(serving_part(&slice(gone)).is_none());
        let terminating = serde_json::json!([{"addresses": ["10.244.1.5"], "nodeName": "n1",
            "conditions": {"ready": false, "serving": true, "terminating": true}}]);
        assert!(serving_part(&slice(terminating)).is_some());
    }
}
