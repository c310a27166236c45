//! Watches both daemons keep: the change signal every watch event raises, reflector stores
//! (trimmed of what ferrolb never reads), and the stores of Secrets and every `metallb.io`
//! configuration kind in ferrolb's namespace. A store is read only after it has listed once
//! (its owner waits for that), so a reader never mistakes a cache still filling for "no pools".

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Lookup, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use prometheus_client::metrics::counter::Counter;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::api::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement,
};
use crate::config::ClusterObjects;

/// Raised on every watch event; counts them for `metallb_k8s_client_updates_total`.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    notify: Notify,
    counted: Counter,
}

impl Changes {
    /// A signal counting into `counter`.
    pub(crate) fn new(counter: Counter) -> Changes {
        Changes {
            notify: Notify::new(),
            counted: counter,
        }
    }

    /// Records one change and wakes the waiter (or the next one, if none waits now).
    pub(crate) fn raise(&self) {
        self.counted.inc();
        self.notify.notify_one();
    }

    /// Waits for the next change.
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }
}

/// Secrets and every `metallb.io` configuration kind in ferrolb's namespace: the stores the
/// controller and the speaker both read.
#[derive(Clone, Debug)]
pub(crate) struct ConfigStores {
    secrets: Store<Secret>,
    pools: Store<IPAddressPool>,
    peers: Store<BGPPeer>,
    bgp_advertisements: Store<BGPAdvertisement>,
    l2_advertisements: Store<L2Advertisement>,
    bfd_profiles: Store<BFDProfile>,
    communities: Store<Community>,
}

/// The longest wait before a failed watch (or list) is started again.
pub(crate) const WATCH_RETRY_MAX: Duration = Duration::from_secs(2);
/// The first wait; it doubles up to [`WATCH_RETRY_MAX`].
const WATCH_RETRY_MIN: Duration = Duration::from_millis(100);

/// The waits between tries of a failed watch (and of a step a daemon cannot start without,
/// [`until_done`](crate::shell::runtime::until_done)): 100 ms doubling up to 2 s, each drawn between
/// three quarters and all of its step (so a fleet of speakers does not retry in step), back
/// to 100 ms at the first event that arrives ([`StreamBackoff`] resets it).
///
/// kube-runtime's default (client-go's: 0.8 s doubling up to 30 s, reset only after events
/// flow again) leaves a watch that failed a few times during an API server outage waiting up
/// to half a minute after the API server is back; a Service created meanwhile is announced
/// only then. Here the wait after an outage is at most 2 s. The cost: while the API server
/// is away each daemon tries each of its watches (about a dozen) at most every 2 s — a
/// refused connection, or with API Priority and Fairness a 429, each.
///
/// [`StreamBackoff`]: kube::runtime::utils::StreamBackoff
#[derive(Debug)]
pub(crate) struct WatchRetry {
    step: Duration,
}

impl Default for WatchRetry {
    fn default() -> WatchRetry {
        WatchRetry {
            step: WATCH_RETRY_MIN,
        }
    }
}

impl Iterator for WatchRetry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let step = self.step;
        self.step = (step * 2).min(WATCH_RETRY_MAX);
        Some(step.mul_f64(rand::random_range(0.75..=1.0)))
    }
}

impl Backoff for WatchRetry {
    fn reset(&mut self) {
        self.step = WATCH_RETRY_MIN;
    }
}

/// `stream` with a watch's "resourceVersion too old" (410 Gone) taken out, so that the
/// watcher lists again at once instead of after a retry wait; a second one with no event
/// between goes through, and waits like any other error.
///
/// A restarted API server answers every watch resumed from before its restart with 410:
/// its new watch cache starts at the present. The watch has nothing to wait for then, and
/// the wait (up to 2 s after an outage) would add to the time the daemon is without news.
pub(crate) fn relist_at_once<K, S>(
    stream: S,
    kind: &'static str,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Send,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut just_relisted = false;
    stream.filter(move |event| {
        let keep = match event {
            Err(watcher::Error::WatchError(status)) if status.code == 410 && !just_relisted => {
                tracing::info!(kind, %status, "watch expired; listing again");
                just_relisted = true;
                false
            }
            Err(_) => true,
            Ok(_) => {
                just_relisted = false;
                true
            }
        };
        std::future::ready(keep)
    })
}

/// The last part of a Rust type's name (`Service` for `k8s_openapi::…::Service`).
pub(crate) fn kind_of<K>() -> &'static str {
    std::any::type_name::<K>()
        .rsplit("::")
        .next()
        .unwrap_or("object")
        .trim_end_matches('>')
}

/// When a watch first failed since it last listed: a list that follows a failure is logged
/// with how long the watch was without its object kind's news.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    since: Option<std::time::Instant>,
}

impl Outage {
    /// Logs the failure; the first since the last list starts the outage.
    pub(crate) fn failed(&mut self, kind: &str, error: &watcher::Error) {
        self.since.get_or_insert_with(std::time::Instant::now);
        tracing::warn!(kind, %error, "watch failed; retrying");
    }

    /// The watch listed: ends the outage, if there was one, with a line saying how long.
    pub(crate) fn listed(&mut self, kind: &str) {
        if let Some(since) = self.since.take() {
            let ms = format!("{:.0}", since.elapsed().as_secs_f64() * 1e3);
            tracing::info!(kind, ms, "watch listed again after failing");
        }
    }
}

/// A reflector store of `stream`, raising `changes` on every event after the first list.
pub(crate) fn spawn_reflector<K, S>(stream: S, changes: Arc<Changes>) -> Store<K>
where
    K: Lookup + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    spawn_recording(stream, changes, |_| {})
}

/// [`spawn_reflector`], with `record` shown each event once the store holds it.
pub(crate) fn spawn_recording<K, S>(
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
    let kind = kind_of::<K>();
    let stream = reflector::reflector(
        writer,
        relist_at_once(stream, kind).backoff(WatchRetry::default()),
    );
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut outage = Outage::default();
        while let Some(event) = stream.next().await {
            if let Ok(event) = &event {
                record(event);
            }
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(watcher::Event::InitDone) => {
                    outage.listed(kind);
                    changes.raise();
                }
                Ok(_) => changes.raise(),
                Err(error) => outage.failed(kind, &error),
            }
        }
    });
    reader
}

/// A store of every object `api` lists, trimmed by [`slim`].
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

/// Owned copies of what `store` holds now.
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
    pub(crate) fn start(client: &Client, namespace: &str, changes: &Arc<Changes>) -> ConfigStores {
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
    pub(crate) async fn ready(&self) {
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
    pub(crate) fn fill(&self, objects: &mut ClusterObjects) {
        objects.pools = owned(&self.pools);
        objects.peers = owned(&self.peers);
        objects.bgp_advertisements = owned(&self.bgp_advertisements);
        objects.l2_advertisements = owned(&self.l2_advertisements);
        objects.bfd_profiles = owned(&self.bfd_profiles);
        objects.communities = owned(&self.communities);
        objects.secrets = owned(&self.secrets);
    }
}

/// A store already holding `items`, with no watch behind it (for tests).
#[cfg(test)]
pub(crate) fn filled<K>(items: Vec<K>) -> Store<K>
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

#[cfg(test)]
impl ConfigStores {
    /// Stores already holding the configuration in `objects` (for tests).
    pub(crate) fn filled(objects: &ClusterObjects) -> ConfigStores {
        ConfigStores {
            secrets: filled(objects.secrets.clone()),
            pools: filled(objects.pools.clone()),
            peers: filled(objects.peers.clone()),
            bgp_advertisements: filled(objects.bgp_advertisements.clone()),
            l2_advertisements: filled(objects.l2_advertisements.clone()),
            bfd_profiles: filled(objects.bfd_profiles.clone()),
            communities: filled(objects.communities.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;
    use k8s_openapi::api::core::v1::Service;
    use kube::core::{PartialObjectMeta, Status};
    use kube::runtime::utils::Backoff as _;
    use kube::runtime::watcher::{Error, Event};

    use super::{WATCH_RETRY_MAX, WatchRetry, kind_of, relist_at_once};

    fn expired() -> Result<Event<Service>, Error> {
        Err(Error::WatchError(Box::new(Status {
            code: 410,
            reason: "Expired".to_string(),
            ..Status::default()
        })))
    }

    fn outcome(event: &Result<Event<Service>, Error>) -> &'static str {
        match event {
            Ok(_) => "event",
            Err(Error::WatchError(status)) if status.code == 410 => "expired",
            Err(_) => "error",
        }
    }

    /// The first 410 after an event lists again at once (it is not passed on to wait); a
    /// second in a row waits like any error.
    #[tokio::test]
    async fn an_expired_watch_lists_again_at_once_but_not_twice_in_a_row() {
        let events = vec![
            Ok(Event::Apply(Service::default())),
            expired(),
            Ok(Event::Init),
            Ok(Event::InitDone),
            expired(),
            expired(),
            Err(Error::NoResourceVersion),
            Ok(Event::Apply(Service::default())),
            expired(),
        ];
        let seen: Vec<_> = relist_at_once(futures::stream::iter(events), "Service")
            .collect::<Vec<_>>()
            .await;
        let seen: Vec<_> = seen.iter().map(outcome).collect();
        assert_eq!(
            seen,
            ["event", "event", "event", "expired", "error", "event"]
        );
    }

    #[test]
    fn kinds_are_named_without_their_path_or_wrapper() {
        assert_eq!(kind_of::<Service>(), "Service");
        assert_eq!(kind_of::<PartialObjectMeta<Service>>(), "Service");
    }

    #[test]
    fn watch_retries_wait_at_most_two_seconds_and_start_over_after_an_event() {
        let mut retry = WatchRetry::default();
        let waits: Vec<_> = retry.by_ref().take(12).collect();
        // 100 ms, 200, 400, 800, 1600, then 2 s for ever; each drawn in [¾, 1] of its step.
        let steps = [100, 200, 400, 800, 1_600, 2_000, 2_000];
        for (wait, step) in waits
            .iter()
            .zip(steps.iter().chain(std::iter::repeat(&2_000)))
        {
            let ms = wait.as_secs_f64() * 1e3;
            assert!(
                ms >= f64::from(*step) * 0.75 - 1e-6 && ms <= f64::from(*step) + 1e-6,
                "{ms} ms for a step of {step} ms"
            );
        }
        assert!(waits.iter().all(|w| *w <= WATCH_RETRY_MAX));
        retry.reset();
        assert!(retry.next().unwrap().as_millis() <= 100);
    }
}
