//! The controller's view of the cluster: one reflector per watched kind, fed by watch
//! streams, and a wake-up signal raised on every change (the parts the speaker shares are in
//! [`crate::shell::watch`]).
//!
//! Watched: Services in every namespace; Namespaces and Nodes (metadata only: labels are all
//! the rules read); Secrets and every `metallb.io` configuration kind in ferrolb's namespace.
//! Nothing is read from the caches until every one of them has listed once
//! ([`Caches::ready`]), so a pass never mistakes a cache still filling for "no pools".

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::config::ClusterObjects;
use crate::shell::watch::{Changes, ConfigStores, from_metadata, full, slim, spawn_recording};
use crate::views::ServiceKey;

/// Changed keys kept before they collapse into "everything changed".
const MAX_CHANGED: usize = 65_536;

/// The Services the watch changed since the last [`Caches::take_changed`], or "all of them"
/// after a (re)list. Recorded after the reflector has applied the event, so a pass that reads
/// a key from here finds the object in the store at least as new.
#[derive(Debug)]
pub(crate) struct ChangedServices(std::sync::Mutex<(bool, Vec<ServiceKey>)>);

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
pub(crate) struct Caches {
    services: Store<Service>,
    changed: Arc<ChangedServices>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    nodes: Store<PartialObjectMeta<Node>>,
    config: ConfigStores,
}

impl Caches {
    /// Starts every watch; `changes` is raised on each event once a kind has listed.
    pub(crate) fn start(client: &Client, namespace: &str, changes: &Arc<Changes>) -> Caches {
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
    pub(crate) async fn ready(&self) {
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
    pub(crate) fn configuration(&self) -> ClusterObjects {
        let mut objects = ClusterObjects {
            namespaces: from_metadata(&self.namespaces),
            nodes: from_metadata(&self.nodes),
            ..ClusterObjects::default()
        };
        self.config.fill(&mut objects);
        objects
    }

    /// Every Service cached now, shared with the cache (not copied: 10,000 of them made every
    /// pass pay for a deep copy), sorted by namespace and name.
    pub(crate) fn services(&self) -> Vec<Arc<Service>> {
        let mut services = self.services.state();
        // Keys are unique, so an unstable sort gives the one order.
        services.sort_unstable_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        services
    }

    /// The Services changed since the last call, sorted; `None` when every Service must be
    /// looked at (the first call, or a list came in since).
    pub(crate) fn take_changed(&self) -> Option<Vec<ServiceKey>> {
        self.changed.take()
    }

    /// The Service `key` as cached now.
    pub(crate) fn service(&self, key: &ServiceKey) -> Option<Arc<Service>> {
        self.services
            .get(&reflector::ObjectRef::new(&key.name).within(&key.namespace))
    }

    /// Caches already filled with `objects`, with no watch behind them (for tests of the
    /// reconciler).
    #[cfg(test)]
    pub(crate) fn filled(objects: &ClusterObjects) -> Caches {
        use crate::shell::watch::filled;
        fn meta<K: kube::Resource<DynamicType = ()> + Clone>(
            items: &[K],
        ) -> Vec<PartialObjectMeta<K>> {
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
            config: ConfigStores::filled(objects),
        }
    }
}
