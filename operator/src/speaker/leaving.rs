//! What a speaker does with its BGP sessions when it stops. A speaker that restarts (a
//! rolling upgrade, a deleted pod the DaemonSet replaces) leaves FRR's sessions to end as
//! the frr container stops, so peers with graceful restart keep its routes until its
//! successor has sent them again. A speaker that goes for good (its DaemonSet deleted, as
//! `helm uninstall` does, or its node cordoned for maintenance) removes FRR's BGP routers
//! first: FRR ends each session with a Cease "peer de-configured", which every peer honours
//! at once, graceful restart or not, instead of holding the routes as stale for minutes.
//!
//! The speaker decides from its pod (`--pod-name`, from the downward API): it stays only when
//! the API server says that the pod's DaemonSet exists and is not being deleted and that the
//! node is schedulable. When it cannot tell (the API server unreachable, or the speaker's
//! permissions already gone with the rest of the release), it removes the routers: that is
//! what a peer without graceful restart sees anyway. Run outside a pod (no pod name), it
//! always leaves the sessions as they are.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;

/// Why the speaker goes for good, or `None` when it restarts.
pub(super) async fn going_for_good(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    node: &str,
) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let owner = match pods.get(pod).await {
        Ok(pod) => pod
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.kind == "DaemonSet")
            .map(|o| o.name),
        Err(e) => return Some(format!("pod {namespace}/{pod} could not be read: {e}")),
    };
    let Some(owner) = owner else {
        return Some(format!("pod {namespace}/{pod} belongs to no DaemonSet"));
    };
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    match sets.get_opt(&owner).await {
        Ok(Some(set)) if set.metadata.deletion_timestamp.is_some() => {
            return Some(format!("DaemonSet {namespace}/{owner} is being deleted"));
        }
        Ok(Some(_)) => {}
        Ok(None) => return Some(format!("DaemonSet {namespace}/{owner} is gone")),
        Err(e) => {
            return Some(format!(
                "DaemonSet {namespace}/{owner} could not be read: {e}"
            ));
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.get(node).await {
        Ok(n)
            if n.spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false) =>
        {
            Some(format!("node {node} is cordoned"))
        }
        Ok(_) => None,
        Err(e) => Some(format!("node {node} could not be read: {e}")),
    }
}
