//! The controller's view of the cluster: one reflector per watched kind, fed by watch
//! streams, and a wake-up signal raised on every change.
//!
//! Watched: Services in every namespace; Namespaces and Nodes (metadata only: labels are all
//! the rules read); Secrets and every `metallb.io` configuration kind in ferrolb's namespace.
//! Nothing is read from the caches until every one of them has listed once
//! ([`Caches::ready`]), so a pass never mistakes a cache still filling for "no pools".

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Lookup, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use prometheus_client::metrics::counter::Counter;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::api::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement,
};
use crate::cluster::ServiceKey;
use crate::config::ClusterObjects;

/// Raised on every watch event; counts them for `metallb_k8s_client_updates_total`.
#[derive(Debug, Default)]
pub struct Changes {
    notify: Notify,
    counted: Counter,
}

impl Changes {
    /// A signal counting into `counter`.
    pub fn new(counter: Counter) -> Changes {
        Changes {
            notify: Notify::new(),
            counted: counter,
        }
    }

    /// Records one change and wakes the waiter (or the next one, if none waits now).
    pub fn raise(&self) {
        self.counted.inc();
        self.notify.notify_one();
    }

    /// Waits for the next change.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}

/// Changed keys kept before they collapse into "everything changed".
const MAX_CHANGED: usize = 65_536;

/// The Services the watch changed since the last [`Caches::take_changed`], or "all of them"
/// after a (re)list. Recorded after the reflector has applied the event, so a pass that reads
/// a key from here finds the object in the store at least as new.
#[derive(Debug)]
pub struct ChangedServices(std::sync::Mutex<(bool, Vec<ServiceKey>)>);

impl Default for ChangedServices {
    /// Nothing seen yet counts as a list: the first taker looks at everything.
    fn default() -> Self {
        ChangedServices(std::sync::Mutex::new((true, Vec::new())))
    }
}

impl ChangedServices {
    fn record(&self, event: &watcher::Event<Service>) {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            watcher::Event::Apply(s) | watcher::Event::Delete(s) => {
                if guard.1.len() >= MAX_CHANGED {
                    // Nobody is taking them (a standby): "everything" says as much.
                    *guard = (true, Vec::new());
                } else if !guard.0 {
                    guard.1.push(ServiceKey::of(s));
                }
            }
            watcher::Event::InitDone => {
                guard.0 = true;
                guard.1 = Vec::new();
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    /// The keys changed (sorted, each once) since the last take; `None` when a list came in
    /// meanwhile (every Service may have changed).
    fn take(&self) -> Option<Vec<ServiceKey>> {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (all, keys) = std::mem::take(&mut *guard);
        if all {
            return None;
        }
        let mut keys = keys;
        keys.sort_unstable();
        keys.dedup();
        Some(keys)
    }
}

/// The reflector stores the controller reads.
#[derive(Clone, Debug)]
pub struct Caches {
    services: Store<Service>,
    changed: Arc<ChangedServices>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    nodes: Store<PartialObjectMeta<Node>>,
    config: ConfigStores,
}

/// Secrets and every `metallb.io` configuration kind in ferrolb's namespace: the stores the
/// controller and the speaker both read.
#[derive(Clone, Debug)]
pub struct ConfigStores {
    secrets: Store<Secret>,
    pools: Store<IPAddressPool>,
    peers: Store<BGPPeer>,
    bgp_advertisements: Store<BGPAdvertisement>,
    l2_advertisements: Store<L2Advertisement>,
    bfd_profiles: Store<BFDProfile>,
    communities: Store<Community>,
}

pub(crate) fn spawn_reflector<K, S>(stream: S, changes: Arc<Changes>) -> Store<K>
where
    K: Lookup + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    spawn_recording(stream, changes, |_| {})
}

/// [`spawn_reflector`], with `record` shown each event once the store holds it.
fn spawn_recording<K, S>(
    stream: S,
    changes: Arc<Changes>,
    record: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> Store<K>
where
    K: Lookup + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let kind = std::any::type_name::<K>()
        .rsplit("::")
        .next()
        .unwrap_or("object");
    let stream = reflector::reflector(writer, stream.default_backoff());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Ok(event) = &event {
                record(event);
            }
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => changes.raise(),
                Err(error) => tracing::warn!(kind, %error, "watch failed; retrying"),
            }
        }
    });
    reader
}

pub(crate) fn full<K>(api: Api<K>, changes: &Arc<Changes>) -> Store<K>
where
    K: Resource + Lookup + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    trimmed(api, changes, |_| {})
}

/// Like [`full`], with `trim` also applied to each object before it is cached (to drop
/// fields the reader never uses).
pub(crate) fn trimmed<K>(api: Api<K>, changes: &Arc<Changes>, trim: fn(&mut K)) -> Store<K>
where
    K: Resource + Lookup + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    spawn_reflector(
        watcher(api, watcher::Config::default()).modify(move |object| {
            slim(object);
            trim(object);
        }),
        Arc::clone(changes),
    )
}

/// Drops what ferrolb never reads and that can be most of a cached object's size: the
/// managed fields (a JSON tree per field manager) and kubectl's last-applied copy of the
/// whole object. With 10,000 Services and their Endpoints this is most of the cache.
pub(crate) fn slim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// What a controller pass reads: the configuration kinds, Namespaces and Nodes, and the
/// Services as the cache holds them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Everything but the Services.
    pub objects: ClusterObjects,
    /// The Services, shared with the cache.
    pub services: Vec<Arc<Service>>,
}

pub(crate) fn owned<K>(store: &Store<K>) -> Vec<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store.state().iter().map(|o| K::clone(o)).collect()
}

/// Full objects carrying only the metadata a metadata watch returned.
pub(crate) fn from_metadata<K>(store: &Store<PartialObjectMeta<K>>) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Default + Clone,
{
    store
        .state()
        .iter()
        .map(|m| {
            let mut object = K::default();
            *object.meta_mut() = m.metadata.clone();
            object
        })
        .collect()
}

impl ConfigStores {
    /// Starts the watches in `namespace`.
    pub fn start(client: &Client, namespace: &str, changes: &Arc<Changes>) -> ConfigStores {
        ConfigStores {
            secrets: full(Api::namespaced(client.clone(), namespace), changes),
            pools: full(Api::namespaced(client.clone(), namespace), changes),
            peers: full(Api::namespaced(client.clone(), namespace), changes),
            bgp_advertisements: full(Api::namespaced(client.clone(), namespace), changes),
            l2_advertisements: full(Api::namespaced(client.clone(), namespace), changes),
            bfd_profiles: full(Api::namespaced(client.clone(), namespace), changes),
            communities: full(Api::namespaced(client.clone(), namespace), changes),
        }
    }

    /// Waits until every kind has listed once.
    pub async fn ready(&self) {
        let _ = futures::join!(
            self.secrets.wait_until_ready(),
            self.pools.wait_until_ready(),
            self.peers.wait_until_ready(),
            self.bgp_advertisements.wait_until_ready(),
            self.l2_advertisements.wait_until_ready(),
            self.bfd_profiles.wait_until_ready(),
            self.communities.wait_until_ready(),
        );
    }

    /// Copies what is cached now into `objects`.
    pub fn fill(&self, objects: &mut ClusterObjects) {
        objects.pools = owned(&self.pools);
        objects.peers = owned(&self.peers);
        objects.bgp_advertisements = owned(&self.bgp_advertisements);
        objects.l2_advertisements = owned(&self.l2_advertisements);
        objects.bfd_profiles = owned(&self.bfd_profiles);
        objects.communities = owned(&self.communities);
        objects.secrets = owned(&self.secrets);
    }
}

impl Caches {
    /// Starts every watch; `changes` is raised on each event once a kind has listed.
    pub fn start(client: &Client, namespace: &str, changes: &Arc<Changes>) -> Caches {
        let changed = Arc::new(ChangedServices::default());
        let recorder = Arc::clone(&changed);
        Caches {
            services: spawn_recording(
                watcher(
                    Api::<Service>::all(client.clone()),
                    watcher::Config::default(),
                )
                .modify(slim),
                Arc::clone(changes),
                move |event| recorder.record(event),
            ),
            changed,
            namespaces: full(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                changes,
            ),
            nodes: full(Api::<PartialObjectMeta<Node>>::all(client.clone()), changes),
            config: ConfigStores::start(client, namespace, changes),
        }
    }

    /// Waits until every kind has listed once.
    pub async fn ready(&self) {
        // A store whose writer is gone never becomes ready; its watch task has ended, which
        // only happens at shutdown.
        let _ = futures::join!(
            self.services.wait_until_ready(),
            self.namespaces.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.config.ready(),
        );
    }

    /// The configuration, Namespaces and Nodes cached now (what the webhook judges a
    /// request against).
    pub fn configuration(&self) -> ClusterObjects {
        let mut objects = ClusterObjects {
            namespaces: from_metadata(&self.namespaces),
            nodes: from_metadata(&self.nodes),
            ..ClusterObjects::default()
        };
        self.config.fill(&mut objects);
        objects
    }

    /// Everything cached now: the configuration copied, the Services shared with the cache
    /// (not copied: 10,000 of them made every pass pay for a deep copy), sorted by namespace
    /// and name.
    pub fn snapshot(&self) -> Snapshot {
        let mut services = self.services.state();
        // Keys are unique, so an unstable sort gives the one order.
        services.sort_unstable_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        let mut objects = ClusterObjects {
            namespaces: from_metadata(&self.namespaces),
            nodes: from_metadata(&self.nodes),
            ..ClusterObjects::default()
        };
        self.config.fill(&mut objects);
        Snapshot { objects, services }
    }

    /// The Services changed since the last call, sorted; `None` when every Service must be
    /// looked at (the first call, or a list came in since).
    pub fn take_changed(&self) -> Option<Vec<ServiceKey>> {
        self.changed.take()
    }

    /// The Service `key` as cached now.
    pub fn service(&self, key: &ServiceKey) -> Option<Arc<Service>> {
        self.services
            .get(&reflector::ObjectRef::new(&key.name).within(&key.namespace))
    }

    /// Caches already filled with `objects`, with no watch behind them (for tests of the
    /// reconciler).
    #[cfg(test)]
    pub(crate) fn filled(objects: &ClusterObjects) -> Caches {
        fn filled<K>(items: Vec<K>) -> Store<K>
        where
            K: Lookup + Clone + 'static,
            K::DynamicType: Eq + Hash + Clone + Default,
        {
            let (reader, mut writer) = reflector::store::<K>();
            writer.apply_watcher_event(&watcher::Event::Init);
            for item in items {
                writer.apply_watcher_event(&watcher::Event::InitApply(item));
            }
            writer.apply_watcher_event(&watcher::Event::InitDone);
            reader
        }
        fn meta<K: Resource<DynamicType = ()> + Clone>(items: &[K]) -> Vec<PartialObjectMeta<K>> {
            items
                .iter()
                .map(|i| PartialObjectMeta {
                    types: None,
                    metadata: i.meta().clone(),
                    _phantom: std::marker::PhantomData,
                })
                .collect()
        }
        Caches {
            services: filled(objects.services.clone()),
            changed: Arc::default(),
            namespaces: filled(meta(&objects.namespaces)),
            nodes: filled(meta(&objects.nodes)),
            config: ConfigStores {
                secrets: filled(objects.secrets.clone()),
                pools: filled(objects.pools.clone()),
                peers: filled(objects.peers.clone()),
                bgp_advertisements: filled(objects.bgp_advertisements.clone()),
                l2_advertisements: filled(objects.l2_advertisements.clone()),
                bfd_profiles: filled(objects.bfd_profiles.clone()),
                communities: filled(objects.communities.clone()),
            },
        }
    }
}
