//! Taking layer 2 over from MetalLB node by node: the nodes whose MetalLB speaker still
//! answers count as members of the layer-2 election.
//!
//! While MetalLB is replaced ("Replacing MetalLB" in the README), MetalLB's speaker holds the
//! memberlist port on the nodes not yet handed over, so ferrolb's speaker there waits and
//! does not gossip. A ferrolb speaker that counted only the speakers it gossips with would
//! find itself alone on the first node handed over and answer for every layer-2 IP, the ones
//! MetalLB's speakers on the other nodes answer for too: each of those IPs would move to it,
//! and move back when its own node is handed over, and every move resets the connections in
//! flight. Counted as members, those nodes keep their IPs, MetalLB's speaker goes on
//! answering for them, and when ferrolb's speaker there takes over, it answers from the same
//! node, so the clients' neighbour caches stay as they are.
//!
//! A node is held while a Running pod of MetalLB's speaker (either label scheme: its chart's
//! `app.kubernetes.io/name=metallb` + `app.kubernetes.io/component=speaker`, its manifests'
//! `app=metallb` + `component=speaker`) is on it, deleted or not, and for [`LINGER`] after
//! the last one is gone: the time ferrolb's speaker there has to bind the port and join. A
//! node that fails meanwhile loses its IPs that much later, and as before once it is NotReady.
//! The election still leaves out nodes that are NotReady or out of service.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::shell::watch::{Outage, WatchRetry, kind_of, relist_at_once};

/// How long a node stays held after its last MetalLB speaker pod is gone.
pub(super) const LINGER: Duration = Duration::from_secs(5);

/// The node a pod of MetalLB's speaker runs on; `None` for any other pod, and for one not
/// running (a pod that failed or has not started answers for nothing).
pub(super) fn metallb_speaker_node(pod: &Pod) -> Option<String> {
    let labels = pod.metadata.labels.as_ref()?;
    let is = |key: &str, value: &str| labels.get(key).is_some_and(|v| v == value);
    let speaker = (is("app.kubernetes.io/name", "metallb")
        && is("app.kubernetes.io/component", "speaker"))
        || (is("app", "metallb") && is("component", "speaker"));
    let running = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Running");
    if !speaker || !running {
        return None;
    }
    pod.spec.as_ref()?.node_name.clone()
}

/// Where MetalLB's speakers run, from the pods seen.
#[derive(Debug, Default)]
pub(super) struct HandOver {
    /// Node of each MetalLB speaker pod running, by pod name.
    pods: BTreeMap<String, String>,
    /// Nodes whose last pod went away, and when.
    gone: BTreeMap<String, Instant>,
}

impl HandOver {
    /// The pods are now these (pod name → node, MetalLB's running speakers only), at `now`.
    pub(super) fn listed(&mut self, pods: BTreeMap<String, String>, now: Instant) {
        let before: Vec<String> = self.pods.keys().cloned().collect();
        for name in before {
            if !pods.contains_key(&name) {
                self.remove(&name, now);
            }
        }
        for (name, node) in pods {
            self.set(name, Some(node), now);
        }
    }

    /// Pod `name` is now on `node` as a running MetalLB speaker, or (`None`) is not one any
    /// more, at `now`.
    pub(super) fn set(&mut self, name: String, node: Option<String>, now: Instant) {
        match node {
            Some(node) => {
                self.gone.remove(&node);
                if let Some(was) = self.pods.insert(name, node.clone())
                    && was != node
                {
                    self.left(&was, now);
                }
            }
            None => self.remove(&name, now),
        }
    }

    fn remove(&mut self, name: &str, now: Instant) {
        if let Some(node) = self.pods.remove(name) {
            self.left(&node, now);
        }
    }

    fn left(&mut self, node: &str, now: Instant) {
        if !self.pods.values().any(|n| n == node) {
            self.gone.insert(node.to_string(), now);
        }
    }

    /// The nodes held at `now`, and when the next of them stops being held (`None` when none
    /// is lingering).
    pub(super) fn held(&mut self, now: Instant) -> (BTreeSet<String>, Option<Instant>) {
        self.gone.retain(|_, at| now < *at + LINGER);
        let held = self
            .pods
            .values()
            .chain(self.gone.keys())
            .cloned()
            .collect();
        let next = self.gone.values().map(|at| *at + LINGER).min();
        (held, next)
    }
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Watches the pods of `namespace` and keeps `held` the nodes held ([`HandOver::held`]) until
/// `shutdown`. A watch that fails leaves the last set, and is retried.
pub(super) async fn run(
    client: Client,
    namespace: String,
    held: watch::Sender<BTreeSet<String>>,
    shutdown: CancellationToken,
) {
    let kind = kind_of::<Pod>();
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let stream = relist_at_once(watcher(api, watcher::Config::default()), kind)
        .backoff(WatchRetry::default());
    let mut stream = std::pin::pin!(stream);
    let mut state = HandOver::default();
    let mut listing: BTreeMap<String, String> = BTreeMap::new();
    let mut outage = Outage::default();
    let mut expiry: Option<Instant> = None;
    loop {
        let event = tokio::select! {
            event = stream.next() => match event {
                Some(event) => Some(event),
                None => return,
            },
            () = async {
                match expiry {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => None,
            () = shutdown.cancelled() => return,
        };
        let now = Instant::now();
        match event {
            Some(Ok(watcher::Event::Init)) => listing.clear(),
            Some(Ok(watcher::Event::InitApply(pod))) => {
                if let Some(node) = metallb_speaker_node(&pod) {
                    listing.insert(pod_name(&pod), node);
                }
            }
            Some(Ok(watcher::Event::InitDone)) => {
                outage.listed(kind);
                state.listed(std::mem::take(&mut listing), now);
            }
            Some(Ok(watcher::Event::Apply(pod))) => {
                state.set(pod_name(&pod), metallb_speaker_node(&pod), now);
            }
            Some(Ok(watcher::Event::Delete(pod))) => state.set(pod_name(&pod), None, now),
            Some(Err(error)) => outage.failed(kind, &error),
            None => {}
        }
        let (nodes, next) = state.held(now);
        expiry = next;
        held.send_if_modified(|was| {
            if *was == nodes {
                return false;
            }
            tracing::info!(
                nodes = %nodes.iter().cloned().collect::<Vec<_>>().join(", "),
                "layer 2: nodes where MetalLB's speaker answers (held for the hand-over)"
            );
            *was = nodes;
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use kube::api::ObjectMeta;

    fn pod(labels: &[(&str, &str)], node: &str, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
        }
    }

    const CHART: &[(&str, &str)] = &[
        ("app.kubernetes.io/name", "metallb"),
        ("app.kubernetes.io/component", "speaker"),
    ];
    const MANIFESTS: &[(&str, &str)] = &[("app", "metallb"), ("component", "speaker")];

    #[test]
    fn metallb_speakers_are_known_by_either_label_scheme_while_running() {
        assert_eq!(
            metallb_speaker_node(&pod(CHART, "n1", "Running")).as_deref(),
            Some("n1")
        );
        assert_eq!(
            metallb_speaker_node(&pod(MANIFESTS, "n2", "Running")).as_deref(),
            Some("n2")
        );
        assert_eq!(metallb_speaker_node(&pod(CHART, "n1", "Pending")), None);
        assert_eq!(metallb_speaker_node(&pod(CHART, "n1", "Failed")), None);
        let controller = [
            ("app.kubernetes.io/name", "metallb"),
            ("app.kubernetes.io/component", "controller"),
        ];
        assert_eq!(
            metallb_speaker_node(&pod(&controller, "n1", "Running")),
            None
        );
        let ferrolb = [
            ("app.kubernetes.io/name", "ferrolb"),
            ("app.kubernetes.io/component", "speaker"),
        ];
        assert_eq!(metallb_speaker_node(&pod(&ferrolb, "n1", "Running")), None);
    }

    fn names(held: &BTreeSet<String>) -> Vec<&str> {
        held.iter().map(String::as_str).collect()
    }

    #[test]
    fn a_node_stays_held_for_the_linger_after_its_metallb_speaker_is_gone() {
        let t0 = Instant::now();
        let mut state = HandOver::default();
        state.listed(
            BTreeMap::from([("a".into(), "n1".into()), ("b".into(), "n2".into())]),
            t0,
        );
        assert_eq!(
            state.held(t0),
            (BTreeSet::from(["n1".into(), "n2".into()]), None)
        );

        let t1 = t0 + Duration::from_secs(10);
        state.set("a".into(), None, t1);
        let (held, next) = state.held(t1 + LINGER - Duration::from_millis(1));
        assert_eq!(names(&held), ["n1", "n2"]);
        assert_eq!(next, Some(t1 + LINGER));
        let (held, next) = state.held(t1 + LINGER);
        assert_eq!(names(&held), ["n2"]);
        assert_eq!(next, None);
    }

    #[test]
    fn a_node_with_another_metallb_speaker_pod_left_is_still_held() {
        let t0 = Instant::now();
        let mut state = HandOver::default();
        state.set("a".into(), Some("n1".into()), t0);
        state.set("a2".into(), Some("n1".into()), t0);
        state.set("a".into(), None, t0);
        let (held, next) = state.held(t0 + LINGER * 2);
        assert_eq!(names(&held), ["n1"]);
        assert_eq!(next, None);
    }

    #[test]
    fn a_relist_without_a_pod_starts_its_nodes_linger_and_a_new_pod_ends_it() {
        let t0 = Instant::now();
        let mut state = HandOver::default();
        state.listed(BTreeMap::from([("a".into(), "n1".into())]), t0);
        state.listed(BTreeMap::new(), t0);
        assert_eq!(state.held(t0).1, Some(t0 + LINGER));
        state.set("c".into(), Some("n1".into()), t0);
        assert_eq!(
            state.held(t0 + LINGER * 2),
            (BTreeSet::from(["n1".into()]), None)
        );
        state.set("c".into(), None, t0 + LINGER * 2);
        assert!(state.held(t0 + LINGER * 3).0.is_empty());
    }

    #[test]
    fn nothing_is_held_without_metallb() {
        let mut state = HandOver::default();
        state.listed(BTreeMap::new(), Instant::now());
        assert_eq!(state.held(Instant::now()), (BTreeSet::new(), None));
    }
}
