//! ServiceBGPStatus and ServiceL2Status objects: one per Service this node announces, in
//! ferrolb's namespace, naming the BGPPeers that receive it (BGP) or the interfaces it is
//! answered on (layer 2, empty for all), with MetalLB's labels (`metallb.io/node`,
//! `metallb.io/service-name`, `metallb.io/service-namespace`) so `kubectl get
//! servicebgpstatus -l metallb.io/service-name=web` works as with MetalLB.
//!
//! Names are stable (`<service>-<node>-<hash>`, at most 63 characters), so objects are written
//! by server-side apply and the set is synced by difference: the node's existing objects are
//! listed once, then only changes are written and objects for Services no longer announced
//! are deleted.

use crate::shell::runtime::{RETRY_MAX, RETRY_MIN};
use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt as _;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde_json::json;

use super::FIELD_MANAGER;
use crate::api::{ServiceBGPStatus, ServiceL2Status};
use crate::views::ServiceKey;

/// A per-Service status kind: its detail is a set of names (peers, interfaces).
pub(crate) trait StatusKind:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The status fields naming the detail.
    fn detail(names: &BTreeSet<String>) -> (&'static str, serde_json::Value);
    /// The Service and detail an object holds.
    fn read(&self) -> (ServiceKey, BTreeSet<String>);
}

/// The Service a status object names.
fn key_of(namespace: Option<String>, name: Option<String>) -> ServiceKey {
    ServiceKey::new(
        namespace.as_deref().unwrap_or_default(),
        name.as_deref().unwrap_or_default(),
    )
}

impl StatusKind for ServiceBGPStatus {
    fn detail(names: &BTreeSet<String>) -> (&'static str, serde_json::Value) {
        ("peers", json!(names))
    }

    fn read(&self) -> (ServiceKey, BTreeSet<String>) {
        let status = self.status.clone().unwrap_or_default();
        let key = key_of(status.service_namespace, status.service_name);
        (key, status.peers.unwrap_or_default().into_iter().collect())
    }
}

impl StatusKind for ServiceL2Status {
    fn detail(names: &BTreeSet<String>) -> (&'static str, serde_json::Value) {
        let list: Vec<serde_json::Value> = names.iter().map(|n| json!({ "name": n })).collect();
        ("interfaces", json!(list))
    }

    fn read(&self) -> (ServiceKey, BTreeSet<String>) {
        let status = self.status.clone().unwrap_or_default();
        let key = key_of(status.service_namespace, status.service_name);
        let names = status
            .interfaces
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.name)
            .collect();
        (key, names)
    }
}

/// The label naming the node.
pub(crate) const NODE_LABEL: &str = "metallb.io/node";
/// The label naming the Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "metallb.io/service-name";
/// The label naming the Service's namespace.
pub(crate) const SERVICE_NAMESPACE_LABEL: &str = "metallb.io/service-namespace";

/// The object name for a Service on a node.
pub(crate) fn object_name(service: &ServiceKey, node: &str) -> String {
    let hash = fnv1a(format!("{}/{}/{node}", service.namespace, service.name).as_bytes());
    let mut head = format!("{}-{node}", service.name);
    head.truncate(53);
    let head = head.trim_end_matches(['-', '.']);
    format!("{head}-{hash:08x}")
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The names (peers, interfaces) one status object lists; Services listing the same names
/// share one copy.
pub(crate) type Names = std::sync::Arc<BTreeSet<String>>;

/// Per Service, the names its status object lists.
pub(crate) type Wanted = std::sync::Arc<BTreeMap<ServiceKey, Names>>;

/// Keeps the node's status objects of kind `K` equal to the announced Services.
#[derive(Debug)]
pub(crate) struct StatusWriter<K: StatusKind> {
    api: Api<K>,
    node: String,
    /// What the cluster holds, by Service: the detail its object lists. `None` until listed.
    /// After a sync that wrote everything, this is the very map that was wanted (shared,
    /// not copied).
    written: Option<Wanted>,
    /// Objects of this node found when listing that no Service owns under its name
    /// (duplicates, or names of an older scheme): deleted on the next sync.
    strays: Vec<String>,
}

impl<K: StatusKind> StatusWriter<K> {
    /// A writer for `node`'s objects in `namespace`.
    pub(crate) fn new(client: Client, namespace: &str, node: &str) -> StatusWriter<K> {
        StatusWriter {
            api: Api::namespaced(client, namespace),
            node: node.to_string(),
            written: None,
            strays: Vec::new(),
        }
    }

    async fn list(&mut self) -> Result<BTreeMap<ServiceKey, Names>, kube::Error> {
        let params = ListParams::default().labels(&format!("{NODE_LABEL}={}", self.node));
        let list = self.api.list(&params).await?;
        let mut written = BTreeMap::new();
        for object in list.items {
            let Some(name) = object.meta().name.clone() else {
                continue;
            };
            let (key, detail) = object.read();
            if name == object_name(&key, &self.node) {
                written.insert(key, Names::new(detail));
            } else {
                self.strays.push(name);
            }
        }
        Ok(written)
    }

    /// Writes what changed so that the node's objects are exactly `wanted`, up to
    /// [`IN_FLIGHT`] requests at a time. One walk over both (sorted) maps finds the
    /// changes; names are worked out only for those.
    pub(crate) async fn sync(&mut self, wanted: &Wanted) -> Result<(), kube::Error> {
        let mut written = match self.written.take() {
            Some(w) => w,
            None => std::sync::Arc::new(self.list().await?),
        };
        let mut changed: Vec<(ServiceKey, Names)> = Vec::new();
        let mut gone: Vec<ServiceKey> = Vec::new();
        let (mut want, mut have) = (wanted.iter().peekable(), written.iter().peekable());
        loop {
            match (want.peek(), have.peek()) {
                (Some((k, v)), Some((h, w))) => match k.cmp(h) {
                    std::cmp::Ordering::Less => {
                        changed.push(((*k).clone(), (*v).clone()));
                        want.next();
                    }
                    std::cmp::Ordering::Greater => {
                        gone.push((*h).clone());
                        have.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if v != w {
                            changed.push(((*k).clone(), (*v).clone()));
                        }
                        want.next();
                        have.next();
                    }
                },
                (Some((k, v)), None) => {
                    changed.push(((*k).clone(), (*v).clone()));
                    want.next();
                }
                (None, Some((h, _))) => {
                    gone.push((*h).clone());
                    have.next();
                }
                (None, None) => break,
            }
        }
        let mut outcome = Ok(());
        let this = &*self;
        let writes = futures::stream::iter(changed)
            .map(|(key, detail)| async move {
                let result = this
                    .write(&object_name(&key, &this.node), &key, &detail)
                    .await;
                (key, detail, result)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        // Applied to `written` only if something failed (else it becomes `wanted`).
        let mut done: Vec<(ServiceKey, Option<Names>)> = Vec::new();
        for (key, detail, result) in writes {
            match result {
                Ok(()) => done.push((key, Some(detail))),
                Err(e) => outcome = Err(e),
            }
        }
        let names = gone
            .into_iter()
            .map(|key| (object_name(&key, &self.node), Some(key)))
            .chain(self.strays.drain(..).map(|name| (name, None)))
            .collect::<Vec<_>>();
        let this = &*self;
        let deletes = futures::stream::iter(names)
            .map(|(name, key)| async move {
                let result = this.api.delete(&name, &DeleteParams::default()).await;
                (name, key, result)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        for (name, key, result) in deletes {
            match result {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => {
                    outcome = Err(e);
                    // Tried again next time.
                    if key.is_none() {
                        self.strays.push(name);
                    }
                    continue;
                }
            }
            if let Some(key) = key {
                done.push((key, None));
            }
        }
        self.written = Some(if outcome.is_ok() {
            // Everything wanted is written: keep the wanted map itself.
            std::sync::Arc::clone(wanted)
        } else {
            let map = std::sync::Arc::make_mut(&mut written);
            for (key, detail) in done {
                match detail {
                    Some(detail) => map.insert(key, detail),
                    None => map.remove(&key),
                };
            }
            written
        });
        outcome
    }

    /// Creates or updates one object and its status.
    async fn write(
        &self,
        name: &str,
        key: &ServiceKey,
        peers: &BTreeSet<String>,
    ) -> Result<(), kube::Error> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let object = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {
                "name": name,
                "labels": {
                    NODE_LABEL: self.node,
                    SERVICE_NAME_LABEL: key.name,
                    SERVICE_NAMESPACE_LABEL: key.namespace,
                },
            },
            "spec": {},
        });
        let (field, detail) = K::detail(peers);
        let mut status = json!({
            "node": self.node,
            "serviceName": key.name,
            "serviceNamespace": key.namespace,
        });
        status[field] = detail;
        let status = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        self.api
            .patch(name, &params, &Patch::Apply(&object))
            .await?;
        self.api
            .patch_status(name, &params, &Patch::Apply(&status))
            .await?;
        Ok(())
    }

    /// Runs until `shutdown`: writes the latest `wanted` whenever it changes, in the
    /// background, so a burst of thousands of writes never holds up FRR. Nothing is written
    /// while `wanted` is `None` (no configuration applied yet). A failed sync is retried
    /// (200 ms doubling to 30 s) with whatever is wanted by then; `errors` counts failures.
    pub(crate) async fn run(
        mut self,
        mut wanted: tokio::sync::watch::Receiver<Option<Wanted>>,
        errors: prometheus_client::metrics::counter::Counter,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut retry = RETRY_MIN;
        loop {
            let latest = wanted.borrow_and_update().clone();
            let result = match &latest {
                Some(latest) => self.sync(latest).await,
                None => Ok(()),
            };
            match result {
                Ok(()) => {
                    retry = RETRY_MIN;
                    tokio::select! {
                        changed = wanted.changed() => if changed.is_err() { return },
                        () = shutdown.cancelled() => return,
                    }
                }
                Err(error) => {
                    errors.inc();
                    tracing::warn!(%error, kind = %K::kind(&()), "writing status objects failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(retry) => {}
                        () = shutdown.cancelled() => return,
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

/// Writes in flight at once.
const IN_FLIGHT: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_short_and_distinct() {
        let a = object_name(&ServiceKey::new("shop", "web"), "node-a");
        assert_eq!(a, object_name(&ServiceKey::new("shop", "web"), "node-a"));
        assert!(a.starts_with("web-node-a-"));
        assert_ne!(a, object_name(&ServiceKey::new("blog", "web"), "node-a"));
        let long = object_name(&ServiceKey::new("x", &"s".repeat(80)), &"n".repeat(80));
        assert!(long.len() <= 63, "{long}");
    }
}
