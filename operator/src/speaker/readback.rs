//! What the speaker reads back from FRR: its sessions (into the metrics and the BFD hold) and
//! whether its running configuration still is what was applied.

use std::time::Instant;

use super::metrics::Metrics;
use crate::frr::apply::Applier;
use crate::frr::bfd_hold::{self, BfdHold, Release};
use crate::frr::running::{first_difference, same_configuration};
use crate::frr::sessions;

/// Reads FRR's sessions into the metrics; returns the BGP sessions.
pub(super) async fn poll_state(
    applier: &mut Applier,
    metrics: &Metrics,
) -> Option<Vec<sessions::BgpSession>> {
    let bgp = applier
        .query("bgpd", "show bgp vrf all neighbors json")
        .await;
    let bfd = applier.query("bfdd", "show bfd peers json").await;
    match (bgp, bfd) {
        (Ok(bgp), Ok(bfd)) => match (sessions::bgp_sessions(&bgp), sessions::bfd_sessions(&bfd)) {
            (Ok(b), Ok(f)) => {
                metrics.set_sessions(&b, &f);
                let repaired = applier.repair_bfd(&f).await;
                if !repaired.is_empty() {
                    tracing::warn!(
                        neighbours = %repaired.join(", "),
                        "bfdd had no session for neighbours configured with BFD (zebra restarted?); registered them again"
                    );
                }
                return Some(b);
            }
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "reading FRR's state"),
        },
        (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "polling FRR"),
    }
    None
}

/// FRR's BGP sessions; `None` (logged) when they cannot be read.
pub(super) async fn read_sessions(applier: &mut Applier) -> Option<Vec<sessions::BgpSession>> {
    let text = applier
        .query("bgpd", "show bgp vrf all neighbors json")
        .await;
    match text.map(|t| sessions::bgp_sessions(&t)) {
        Ok(Ok(sessions)) => Some(sessions),
        Ok(Err(error)) => {
            tracing::warn!(%error, "reading FRR's sessions");
            None
        }
        Err(error) => {
            tracing::debug!(%error, "reading FRR's sessions");
            None
        }
    }
}

/// Takes FRR's sessions into the BFD hold and logs each neighbour it releases; whether it
/// released any.
pub(super) fn observe_sessions(hold: &mut BfdHold, sessions: &[sessions::BgpSession]) -> bool {
    let released = hold.observe(sessions, Instant::now());
    for r in &released {
        match r.why {
            Release::Established => tracing::info!(
                peer = %r.peer, vrf = %r.vrf,
                "BFD configured for the neighbour: its session came up"
            ),
            Release::PeerWaits => tracing::info!(
                peer = %r.peer, vrf = %r.vrf,
                wait_s = bfd_hold::RELEASE_AFTER.as_secs(),
                "BFD configured for the neighbour: the peer does not answer the OPEN without it"
            ),
        }
    }
    !released.is_empty()
}

/// How FRR's running configuration differs from what was applied, if it does.
pub(super) async fn drifted(applier: &mut Applier) -> Option<String> {
    applier.applied_text()?;
    let merged = match applier.running_config().await {
        Ok(running) => applier
            .applied_text()
            .filter(|applied| !same_configuration(applied, &running))
            .map(|applied| first_difference(applied, &running)),
        Err(error) => {
            tracing::warn!(%error, "reading FRR's running configuration");
            return None;
        }
    };
    match merged {
        Some(difference) => Some(difference),
        None => applier.daemon_lacking().await,
    }
}
