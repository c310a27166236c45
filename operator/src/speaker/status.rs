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

/// Objects asked for per list request.
const LIST_PAGE: u32 = 500;

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

    /// The node's objects, [`LIST_PAGE`] at a time: with 10,000 Services (and, during a
    /// switch, MetalLB's objects for the node besides), one list would be tens of MiB
    /// parsed at once, which the allocator then keeps. Objects listing the same names share
    /// one copy of them, as the wanted map's do.
    async fn list(&mut self) -> Result<BTreeMap<ServiceKey, Names>, kube::Error> {
        let mut params = ListParams::default()
            .labels(&format!("{NODE_LABEL}={}", self.node))
            .limit(LIST_PAGE);
        let mut written = BTreeMap::new();
        let mut distinct: Vec<Names> = Vec::new();
        let mut strays = Vec::new();
        loop {
            let page = self.api.list(&params).await?;
            for object in page.items {
                let Some(name) = object.meta().name.clone() else {
                    continue;
                };
                let (key, detail) = object.read();
                if name != object_name(&key, &self.node) {
                    strays.push(name);
                    continue;
                }
                let names = match distinct.iter().find(|n| ***n == detail) {
                    Some(names) => Names::clone(names),
                    None => {
                        let names = Names::new(detail);
                        distinct.push(Names::clone(&names));
                        names
                    }
                };
                written.insert(key, names);
            }
            match page.metadata.continue_.filter(|token| !token.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => {
                    // Only a whole listing counts: one that failed halfway is done again.
                    self.strays = strays;
                    return Ok(written);
                }
            }
        }
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
                // The answer (the object as deleted, managed fields and all) is dropped here:
                // a hand-over deletes MetalLB's objects of the node, 10,000 with as many
                // Services, and kept until the last answer they would all be in memory.
                let result = this
                    .api
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map(drop);
                (name, key, result)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        for (name, key, result) in deletes {
            match result {
                Ok(()) => {}
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

    type Handle = tower_test::mock::Handle<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >;

    /// Answers the next request with `body`, returning its method and URI.
    async fn answer(handle: &mut Handle, body: serde_json::Value) -> (String, String) {
        let (request, send) =
            tokio::time::timeout(std::time::Duration::from_secs(5), handle.next_request())
                .await
                .expect("a request in time")
                .expect("a request");
        let seen = (request.method().to_string(), request.uri().to_string());
        let response = http::Response::builder()
            .status(200)
            .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        send.send_response(response);
        seen
    }

    fn bgp_status(name: &str, service: &str) -> serde_json::Value {
        json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "ServiceBGPStatus",
            "metadata": {"name": name, "namespace": "metallb-system"},
            "spec": {},
            "status": {"node": "n1", "serviceName": service, "serviceNamespace": "shop",
                       "peers": ["tor"]}
        })
    }

    #[tokio::test]
    async fn the_nodes_objects_are_listed_a_page_at_a_time_and_only_differences_written() {
        let (service, mut handle) = tower_test::mock::pair();
        let client = Client::new(service, "default");
        let mut writer = StatusWriter::<ServiceBGPStatus>::new(client, "metallb-system", "n1");
        let tor: Names = Names::new(["tor".to_string()].into());
        let wanted: Wanted = std::sync::Arc::new(
            [
                (ServiceKey::new("shop", "web"), Names::clone(&tor)),
                (ServiceKey::new("shop", "db"), Names::clone(&tor)),
            ]
            .into(),
        );
        let web = object_name(&ServiceKey::new("shop", "web"), "n1");
        let db = object_name(&ServiceKey::new("shop", "db"), "n1");
        let sync = tokio::spawn(async move {
            let result = writer.sync(&wanted).await;
            (result, writer)
        });

        let (method, uri) = answer(
            &mut handle,
            json!({"apiVersion": "metallb.io/v1beta1", "kind": "ServiceBGPStatusList",
                   "metadata": {"continue": "page-2"}, "items": [bgp_status(&web, "web")]}),
        )
        .await;
        assert_eq!(method, "GET");
        assert!(uri.contains("limit=500"), "{uri}");
        assert!(
            uri.contains("labelSelector=metallb.io%2Fnode%3Dn1"),
            "{uri}"
        );
        assert!(!uri.contains("continue="), "{uri}");
        // The second page: db's object, and one under a name of another scheme (MetalLB's).
        let (method, uri) = answer(
            &mut handle,
            json!({"apiVersion": "metallb.io/v1beta1", "kind": "ServiceBGPStatusList",
                   "metadata": {}, "items": [bgp_status(&db, "db"),
                                             bgp_status("n1-x7k2p", "web")]}),
        )
        .await;
        assert_eq!(method, "GET");
        assert!(uri.contains("continue=page-2"), "{uri}");
        // Both objects already say what is wanted: the only request left deletes the stray.
        let (method, uri) = answer(&mut handle, bgp_status("n1-x7k2p", "web")).await;
        assert_eq!(method, "DELETE");
        assert!(uri.contains("/servicebgpstatuses/n1-x7k2p?"), "{uri}");
        let (result, writer) = sync.await.unwrap();
        result.unwrap();
        assert!(writer.strays.is_empty());
    }
}
