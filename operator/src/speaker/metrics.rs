//! The speaker's Prometheus metrics, under MetalLB's names where MetalLB has one.
//!
//! `peer` is the neighbour as FRR names it (its address or interface, `%vrf` outside the
//! default VRF): bounded by the BGPPeers selecting this node. A peer that goes away loses its
//! series.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::frr::sessions::{BfdSession, BgpSession, by_peer};
use crate::shell::metrics::ClientMetrics;
use crate::shell::runtime::DaemonMetrics;

/// The `peer` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PeerLabel {
    /// The neighbour.
    pub peer: String,
}

/// The `path` label of applies.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PathLabel {
    /// `delta`, `reload` or `failed`.
    pub path: String,
}

/// Every metric the speaker exports.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    session_up: Family<PeerLabel, Gauge>,
    announced: Family<PeerLabel, Gauge>,
    updates: Family<PeerLabel, Gauge>,
    bfd_up: Family<PeerLabel, Gauge>,
    /// The Kubernetes client metrics.
    pub client: ClientMetrics,
    /// Applies by path.
    pub applies: Family<PathLabel, Counter>,
    last_apply_ms: Gauge,
    frr_version_known: Gauge,
    /// Layer-2 answers and announcements.
    pub l2: std::sync::Arc<crate::l2::responder::L2Metrics>,
    /// Gossip.
    pub members: std::sync::Arc<crate::l2::members::MembersMetrics>,
}

impl DaemonMetrics for Metrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "metallb_bgp_session_up",
            "BGP session state (1 is up, 0 is down)",
            self.session_up.clone(),
        );
        registry.register(
            "metallb_bgp_announced_prefixes_total",
            "Number of prefixes currently being advertised on the BGP session",
            self.announced.clone(),
        );
        registry.register(
            "metallb_bgp_updates_total",
            "Number of BGP UPDATE messages sent (FRR's counter for the session)",
            self.updates.clone(),
        );
        registry.register(
            "metallb_bfd_session_up",
            "BFD session state (1 is up, 0 is down)",
            self.bfd_up.clone(),
        );
        self.client.register(registry);
        registry.register(
            "ferrolb_frr_applies",
            "Configuration applies to FRR, by path (delta, reload, failed)",
            self.applies.clone(),
        );
        registry.register(
            "ferrolb_frr_last_apply_milliseconds",
            "Wall time of the last apply, verification included",
            self.last_apply_ms.clone(),
        );
        registry.register(
            "ferrolb_frr_version_known",
            "Whether the running FRR is a version ferrolb renders and types deltas for (1), or one it drives through frr-reload.py alone (0)",
            self.frr_version_known.clone(),
        );
        self.l2.register(registry);
        self.members.register(registry);
    }
}

impl Metrics {
    /// Records whether the running FRR's version is known.
    pub(crate) fn set_frr_version_known(&self, known: bool) {
        self.frr_version_known.set(i64::from(known));
    }

    /// Records one apply.
    pub(crate) fn record_apply(&self, path: &str, elapsed_ms: f64) {
        self.applies
            .get_or_create(&PathLabel {
                path: path.to_string(),
            })
            .inc();
        // Rounded up, so a fast apply still reads as at least 1 ms.
        self.last_apply_ms.set(elapsed_ms.ceil() as i64);
    }

    /// Sets the session gauges from FRR's state.
    pub(crate) fn set_sessions(&self, bgp: &[BgpSession], bfd: &[BfdSession]) {
        let peers: BTreeMap<String, &BgpSession> = by_peer(bgp);
        for family in [&self.session_up, &self.announced, &self.updates] {
            family.clear();
        }
        for (peer, session) in peers {
            let label = PeerLabel { peer };
            self.session_up
                .get_or_create(&label)
                .set(i64::from(session.up));
            self.announced
                .get_or_create(&label)
                .set(i64::try_from(session.prefixes_sent).unwrap_or(i64::MAX));
            self.updates
                .get_or_create(&label)
                .set(i64::try_from(session.updates_sent).unwrap_or(i64::MAX));
        }
        self.bfd_up.clear();
        for session in bfd {
            let peer = if session.vrf == "default" {
                session.peer.clone()
            } else {
                format!("{}%{}", session.peer, session.vrf)
            };
            self.bfd_up
                .get_or_create(&PeerLabel { peer })
                .set(i64::from(session.up()));
        }
    }
}
