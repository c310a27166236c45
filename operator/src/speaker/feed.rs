//! Watches that hand on what changed instead of keeping objects.
//!
//! The speaker reads 10,000 Services and as many endpoint objects, but each pass needs only
//! the few that changed. A [`Feed`] turns one watch into a queue of changes of a small
//! projection of each object (an [`crate::views::LbService`], an endpoint summary): the
//! latest value per key since the reader last looked, or a whole new list after the watch
//! (re)listed. The reader keeps the only copy ([`SortedSet`], or a map of its own), so no
//! Kubernetes object stays in memory and nothing is rebuilt that did not change.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::shell::watch::{Changes, Outage, WatchRetry, kind_of, relist_at_once};

/// Changes not yet taken by the reader.
#[derive(Debug)]
pub(crate) struct Pending<K, V> {
    /// The watch listed everything anew: these are all the values (none other exists).
    pub reset: Option<Vec<(K, V)>>,
    /// Changes after that, the latest per key; `None` for gone.
    pub changed: BTreeMap<K, Option<V>>,
}

impl<K, V> Default for Pending<K, V> {
    fn default() -> Self {
        Pending {
            reset: None,
            changed: BTreeMap::new(),
        }
    }
}

impl<K: Ord, V> Pending<K, V> {
    /// A full list, as the first list of a watch gives it.
    #[cfg(test)]
    pub(crate) fn listed(values: impl IntoIterator<Item = (K, V)>) -> Self {
        Pending {
            reset: Some(values.into_iter().collect()),
            changed: BTreeMap::new(),
        }
    }
}

/// One watch's changes, projected to `(K, V)` by the functions given to [`Feed::start`].
#[derive(Debug)]
pub(crate) struct Feed<K, V> {
    pending: Mutex<Pending<K, V>>,
    ready: tokio::sync::watch::Sender<bool>,
}

impl<K, V> Feed<K, V>
where
    K: Ord + Clone + Debug + Send + 'static,
    V: Debug + Send + 'static,
{
    /// Watches `api`. Every object is reduced to its key (`key`) and its value (`value`;
    /// `None` treats the object as absent), and `changes` is raised for each event.
    pub(crate) fn start<O>(
        api: Api<O>,
        key: fn(&O) -> K,
        value: fn(&O) -> Option<V>,
        changes: &Arc<Changes>,
    ) -> Arc<Feed<K, V>>
    where
        O: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
    {
        let feed = Arc::new(Feed {
            pending: Mutex::new(Pending::default()),
            ready: tokio::sync::watch::Sender::new(false),
        });
        let kind = kind_of::<O>();
        let (writer, changes) = (Arc::clone(&feed), Arc::clone(changes));
        let stream = relist_at_once(watcher(api, watcher::Config::default()), kind)
            .backoff(WatchRetry::default());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // What a list in progress has delivered so far.
            let mut listing: Vec<(K, V)> = Vec::new();
            let mut outage = Outage::default();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Init) => listing.clear(),
                    Ok(watcher::Event::InitApply(object)) => {
                        if let Some(v) = value(&object) {
                            listing.push((key(&object), v));
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        outage.listed(kind);
                        let list = std::mem::take(&mut listing);
                        writer.push(|p| {
                            p.changed.clear();
                            p.reset = Some(list);
                        });
                        writer.ready.send_replace(true);
                        changes.raise();
                    }
                    Ok(watcher::Event::Apply(object)) => {
                        let (k, v) = (key(&object), value(&object));
                        writer.push(|p| {
                            p.changed.insert(k, v);
                        });
                        changes.raise();
                    }
                    Ok(watcher::Event::Delete(object)) => {
                        let k = key(&object);
                        writer.push(|p| {
                            p.changed.insert(k, None);
                        });
                        changes.raise();
                    }
                    Err(error) => outage.failed(kind, &error),
                }
            }
        });
        feed
    }

    fn push(&self, change: impl FnOnce(&mut Pending<K, V>)) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut pending);
    }

    /// Waits until the watch has listed once.
    pub(crate) async fn ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Takes what changed since the last call.
    pub(crate) fn take(&self) -> Pending<K, V> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Values kept in key order in one vector (read as a slice), with the key inside the value.
#[derive(Clone, Debug)]
pub(crate) struct SortedSet<K, V> {
    items: Vec<V>,
    key: fn(&V) -> &K,
}

/// Changes at most this many are patched in place (a binary search and a move each); more
/// are merged in one walk.
const PATCH_IN_PLACE: usize = 32;

impl<K: Ord + Clone, V: PartialEq> SortedSet<K, V> {
    /// An empty set whose values hold their key at `key`.
    pub(crate) fn new(key: fn(&V) -> &K) -> Self {
        SortedSet {
            items: Vec::new(),
            key,
        }
    }

    /// The values, in key order.
    pub(crate) fn as_slice(&self) -> &[V] {
        &self.items
    }

    /// The value under `k`.
    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        let key = self.key;
        self.items
            .binary_search_by(|v| key(v).cmp(k))
            .ok()
            .map(|i| &self.items[i])
    }

    /// Takes in `pending`; returns the keys whose value was added, changed or removed.
    pub(crate) fn apply(&mut self, pending: Pending<K, V>) -> BTreeSet<K> {
        let key = self.key;
        let mut touched = BTreeSet::new();
        if let Some(mut list) = pending.reset {
            list.sort_by(|a, b| a.0.cmp(&b.0));
            list.dedup_by(|a, b| a.0 == b.0);
            let fresh: Vec<V> = list.into_iter().map(|(_, v)| v).collect();
            merge_walk(&self.items, &fresh, key, |k| {
                touched.insert(k.clone());
            });
            self.items = fresh;
        }
        if pending.changed.len() <= PATCH_IN_PLACE {
            for (k, v) in pending.changed {
                let at = self.items.binary_search_by(|x| key(x).cmp(&k));
                match (at, v) {
                    (Ok(i), Some(v)) if self.items[i] == v => {}
                    (Ok(i), Some(v)) => {
                        self.items[i] = v;
                        touched.insert(k);
                    }
                    (Ok(i), None) => {
                        self.items.remove(i);
                        touched.insert(k);
                    }
                    (Err(i), Some(v)) => {
                        self.items.insert(i, v);
                        touched.insert(k);
                    }
                    (Err(_), None) => {}
                }
            }
            return touched;
        }
        let old = std::mem::take(&mut self.items);
        let mut merged = Vec::with_capacity(old.len() + pending.changed.len());
        let mut changes = pending.changed.into_iter().peekable();
        for item in old {
            while let Some((k, _)) = changes.peek() {
                if k >= key(&item) {
                    break;
                }
                let (k, v) = changes.next().expect("peeked");
                if let Some(v) = v {
                    merged.push(v);
                    touched.insert(k);
                }
            }
            match changes.peek() {
                Some((k, _)) if k == key(&item) => {
                    let (k, v) = changes.next().expect("peeked");
                    match v {
                        Some(v) if v == item => merged.push(item),
                        Some(v) => {
                            merged.push(v);
                            touched.insert(k);
                        }
                        None => {
                            touched.insert(k);
                        }
                    }
                }
                _ => merged.push(item),
            }
        }
        for (k, v) in changes {
            if let Some(v) = v {
                merged.push(v);
                touched.insert(k);
            }
        }
        self.items = merged;
        touched
    }
}

/// Calls `differs` with every key whose value is not the same in `a` and `b` (both sorted
/// by `key`), including keys in only one of them.
fn merge_walk<K: Ord, V: PartialEq>(
    a: &[V],
    b: &[V],
    key: fn(&V) -> &K,
    mut differs: impl FnMut(&K),
) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => match key(x).cmp(key(y)) {
                std::cmp::Ordering::Less => {
                    differs(key(x));
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    differs(key(y));
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    if x != y {
                        differs(key(x));
                    }
                    i += 1;
                    j += 1;
                }
            },
            (Some(x), None) => {
                differs(key(x));
                i += 1;
            }
            (None, Some(y)) => {
                differs(key(y));
                j += 1;
            }
            (None, None) => break,
        }
    }
}

/// Where each Service's endpoints serve, kept from a feed of EndpointSlices (keyed by object)
/// that each name their Service.
#[derive(Clone, Debug, Default)]
pub(crate) struct EndpointIndex {
    /// Per object: its Service, when that is not the object's own name (a slice named as
    /// its Service costs no key here).
    owner: BTreeMap<ObjectKey, crate::views::ServiceKey>,
    /// Per Service and object: what the object says.
    parts: BTreeMap<(crate::views::ServiceKey, ObjectKey), crate::views::ServingEndpoints>,
    /// Per Service: all its objects merged.
    merged: BTreeMap<crate::views::ServiceKey, crate::views::ServingEndpoints>,
}

/// `namespace/name` of an endpoint object.
pub(crate) type ObjectKey = crate::views::ServiceKey;

/// What an endpoint object says: its Service and where it serves.
pub(crate) type EndpointPart = (crate::views::ServiceKey, crate::views::ServingEndpoints);

impl EndpointIndex {
    /// Per Service, where its endpoints serve.
    pub(crate) fn by_service(
        &self,
    ) -> &BTreeMap<crate::views::ServiceKey, crate::views::ServingEndpoints> {
        &self.merged
    }

    /// Takes in `pending`; returns the Services whose summary changed.
    pub(crate) fn apply(
        &mut self,
        pending: Pending<ObjectKey, EndpointPart>,
    ) -> BTreeSet<crate::views::ServiceKey> {
        let mut dirty = BTreeSet::new();
        if let Some(list) = pending.reset {
            let listed: BTreeSet<&ObjectKey> = list.iter().map(|(k, _)| k).collect();
            let gone: Vec<ObjectKey> = self
                .parts
                .keys()
                .map(|(_, object)| object)
                .filter(|k| !listed.contains(k))
                .cloned()
                .collect();
            for object in gone {
                self.set(object, None, &mut dirty);
            }
            for (object, part) in list {
                self.set(object, Some(part), &mut dirty);
            }
        }
        for (object, part) in pending.changed {
            self.set(object, part, &mut dirty);
        }
        dirty.retain(|service| {
            let mut parts = self
                .parts
                .range((service.clone(), ObjectKey::new("", ""))..)
                .take_while(|((s, _), _)| s == service)
                .map(|(_, p)| p);
            let summary = parts.next().map(|first| {
                let mut all = first.clone();
                for part in parts {
                    all.merge(part);
                }
                all
            });
            let before = self.merged.get(service);
            if before == summary.as_ref() {
                return false;
            }
            match summary {
                Some(summary) => self.merged.insert(service.clone(), summary),
                None => self.merged.remove(service),
            };
            true
        });
        dirty
    }

    fn set(
        &mut self,
        object: ObjectKey,
        part: Option<EndpointPart>,
        dirty: &mut BTreeSet<crate::views::ServiceKey>,
    ) {
        let own = (object.clone(), object.clone());
        let before = match self.owner.remove(&object) {
            Some(service) => Some((service, object.clone())),
            None => self.parts.contains_key(&own).then_some(own),
        };
        if let Some(at) = before {
            self.parts.remove(&at);
            dirty.insert(at.0);
        }
        if let Some((service, serving)) = part {
            if service != object {
                self.owner.insert(object.clone(), service.clone());
            }
            self.parts.insert((service.clone(), object), serving);
            dirty.insert(service);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::{ServiceKey, ServingEndpoints};
    use proptest::prelude::*;

    fn key(v: &(u8, u8)) -> &u8 {
        &v.0
    }

    proptest! {
        /// Whatever the order and size of the changes, the set holds exactly the latest
        /// value per key, in order, and reports exactly the keys whose value differs.
        #[test]
        fn a_sorted_set_is_the_latest_value_per_key(
            start in proptest::collection::btree_map(0u8..60, 0u8..3, 0..40),
            steps in proptest::collection::vec(
                (proptest::option::of(proptest::collection::btree_map(0u8..60, 0u8..3, 0..40)),
                 proptest::collection::btree_map(0u8..60, proptest::option::of(0u8..3), 0..50)),
                1..6),
        ) {
            let mut set = SortedSet::new(key);
            set.apply(Pending::listed(start.iter().map(|(k, v)| (*k, (*k, *v)))));
            let mut model: BTreeMap<u8, u8> = start;
            for (reset, changed) in steps {
                let before = model.clone();
                let was_reset = reset.is_some();
                if let Some(list) = &reset {
                    model = list.clone();
                }
                for (k, v) in &changed {
                    match v {
                        Some(v) => { model.insert(*k, *v); }
                        None => { model.remove(k); }
                    }
                }
                let touched = set.apply(Pending {
                    reset: reset.map(|l| l.into_iter().map(|(k, v)| (k, (k, v))).collect()),
                    changed: changed.into_iter().map(|(k, v)| (k, v.map(|v| (k, v)))).collect(),
                });
                let held: Vec<(u8, u8)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(set.as_slice(), held.as_slice());
                let expected: BTreeSet<u8> = before.keys().chain(model.keys())
                    .filter(|k| before.get(k) != model.get(k)).copied().collect();
                if was_reset {
                    // A key a re-list dropped and a later change restored may be reported.
                    prop_assert!(touched.is_superset(&expected));
                } else {
                    prop_assert_eq!(touched, expected);
                }
            }
        }

        /// The index equals grouping all current objects from scratch, and reports the
        /// Services whose summary changed.
        #[test]
        fn the_endpoint_index_is_the_grouping_of_its_objects(
            steps in proptest::collection::vec(
                proptest::collection::btree_map(0u8..12, proptest::option::of((0u8..4, proptest::collection::btree_set(0u8..3, 0..3), any::<bool>())), 0..8),
                1..8),
        ) {
            let part = |(s, nodes, any): (u8, BTreeSet<u8>, bool)| -> EndpointPart {
                (ServiceKey::new("ns", &format!("s{s}")), ServingEndpoints {
                    nodes: nodes.iter().map(|n| format!("n{n}")).collect(),
                    ready: nodes.iter().filter(|n| *n % 2 == 0).map(|n| format!("n{n}")).collect(),
                    any: any || !nodes.is_empty(),
                })
            };
            let mut index = EndpointIndex::default();
            let mut objects: BTreeMap<u8, EndpointPart> = BTreeMap::new();
            for changed in steps {
                let before = index.by_service().clone();
                let mut pending = Pending::default();
                for (o, p) in changed {
                    let p = p.map(part);
                    match &p {
                        Some(p) => { objects.insert(o, p.clone()); }
                        None => { objects.remove(&o); }
                    }
                    // Objects 0-3 are named as Services are (as core/v1 Endpoints are).
                    let name = if o < 4 { format!("s{o}") } else { format!("o{o}") };
                    pending.changed.insert(ServiceKey::new("ns", &name), p);
                }
                let dirty = index.apply(pending);
                let mut expected: BTreeMap<ServiceKey, ServingEndpoints> = BTreeMap::new();
                for (s, p) in objects.values() {
                    expected.entry(s.clone()).or_default().merge(p);
                }
                prop_assert_eq!(index.by_service(), &expected);
                let changed: BTreeSet<ServiceKey> = before.keys().chain(expected.keys())
                    .filter(|k| before.get(*k) != expected.get(*k)).cloned().collect();
                prop_assert_eq!(dirty, changed);
            }
        }
    }
}
