//! When each BGP session's BFD is configured: once the session has come up, not before.
//!
//! FRR creates a neighbour's BFD session as soon as `neighbor X bfd` is configured, with no
//! local address and no interface while the BGP connection does not exist yet. When the
//! connection comes up, bgpd learns both and replaces the BFD session with a new one (new
//! discriminator, state Down). A peer whose BFD session was already up sees it go down at
//! that moment: BIRD drops the BGP session for "BFD session down" and refuses it for its
//! error wait time (60 s, doubling on repeats), on every start of FRR or of its bgpd.
//! Configured after the session is up, BFD starts with the connection's addresses and is
//! never replaced.
//!
//! Some peers do the opposite: FRR 10 with BFD configured for a neighbour may accept the TCP
//! connection but send no OPEN until BFD is up. A held neighbour found twice, at least
//! [`RELEASE_AFTER`] apart, with a connection its peer has never answered an OPEN on
//! therefore gets its BFD then: the connection exists, so BFD starts with its addresses all
//! the same. A peer that cannot be reached (no route, refused, or one that closes at once,
//! as BIRD does in its error wait) keeps waiting: BFD would not help it, and would be
//! replaced under it once it answers.
//!
//! [`BfdHold`] keeps that decision per neighbour, from FRR's session list (pure: the caller
//! reads `show bgp vrf all neighbors json` and passes the time). A neighbour is released when
//! FRR reports it has been Established at least once, or once its peer has left its OPEN
//! unanswered as above; it is held again when its counter goes back (bgpd restarted) or it
//! leaves FRR's list. The applier
//! writes frr.conf without any neighbour's BFD ([`super::apply`]), so an FRR that restarts
//! boots in the held state and the speaker adds BFD as sessions come up.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::model::FrrConfig;
use super::sessions::BgpSession;

/// How long a neighbour whose peer leaves its OPEN unanswered waits for its BFD.
pub const RELEASE_AFTER: Duration = Duration::from_secs(3);

/// The VRF FRR names the default one.
const DEFAULT_VRF: &str = "default";

/// A neighbour as FRR's session list names it: (VRF, neighbour).
type Key = (String, String);

/// One neighbour FRR has.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    /// When it was first found awaiting its peer's first OPEN.
    awaiting_since: Option<Instant>,
    /// Times FRR says it came up, when last read.
    established: u64,
    /// Whether its BFD may be configured, and why.
    released: Option<Release>,
}

/// Why a neighbour's BFD is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Its session has come up.
    Established,
    /// Its peer left its OPEN unanswered for [`RELEASE_AFTER`]: it waits for BFD.
    PeerWaits,
}

/// A neighbour whose BFD state changed in [`BfdHold::observe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    /// The VRF (`default` for the default one).
    pub vrf: String,
    /// The neighbour.
    pub peer: String,
    /// Why its BFD is now configured.
    pub why: Release,
}

/// Which neighbours' BFD is held back; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct BfdHold {
    seen: BTreeMap<Key, Seen>,
}

impl BfdHold {
    /// A hold that has seen no session: every neighbour's BFD is held.
    pub fn new() -> BfdHold {
        BfdHold::default()
    }

    /// Takes FRR's sessions as read at `now`; returns the neighbours released by them.
    pub fn observe(&mut self, sessions: &[BgpSession], now: Instant) -> Vec<Released> {
        let mut next = BTreeMap::new();
        let mut released = Vec::new();
        for session in sessions {
            let key = (session.vrf.clone(), session.peer.clone());
            let mut seen = match self.seen.remove(&key) {
                // A lower count is a new bgpd: the neighbour starts over.
                Some(seen) if session.established >= seen.established => seen,
                _ => Seen {
                    awaiting_since: None,
                    established: 0,
                    released: None,
                },
            };
            seen.established = session.established;
            let waited = match (session.awaiting_open, seen.awaiting_since) {
                (true, None) => {
                    seen.awaiting_since = Some(now);
                    false
                }
                (true, Some(since)) => now.duration_since(since) >= RELEASE_AFTER,
                (false, _) => false,
            };
            if seen.released.is_none() {
                let why = if session.established > 0 || session.up {
                    Some(Release::Established)
                } else if waited {
                    Some(Release::PeerWaits)
                } else {
                    None
                };
                if let Some(why) = why {
                    seen.released = Some(why);
                    released.push(Released {
                        vrf: key.0.clone(),
                        peer: key.1.clone(),
                        why,
                    });
                }
            }
            next.insert(key, seen);
        }
        self.seen = next;
        released
    }

    /// Whether `peer` of `vrf` (`None`: the default one) may have its BFD.
    pub fn released(&self, vrf: Option<&str>, peer: &str) -> bool {
        let key = (vrf.unwrap_or(DEFAULT_VRF).to_string(), peer.to_string());
        self.seen.get(&key).is_some_and(|s| s.released.is_some())
    }

    /// `model` with the BFD of every neighbour not yet released left out; `model` itself
    /// when nothing is held.
    pub fn gate<'a>(&self, model: &'a FrrConfig) -> Cow<'a, FrrConfig> {
        let held = |vrf: Option<&str>, peer: &str| !self.released(vrf, peer);
        let holds_any = model.routers.iter().any(|r| {
            r.neighbors
                .iter()
                .any(|n| n.bfd_profile.is_some() && held(r.vrf.as_deref(), &n.peer))
        });
        if !holds_any {
            return Cow::Borrowed(model);
        }
        let mut out = model.clone();
        for router in &mut out.routers {
            for n in &mut router.neighbors {
                if held(router.vrf.as_deref(), &n.peer) {
                    n.bfd_profile = None;
                }
            }
        }
        Cow::Owned(out)
    }
}

/// The first line of the frr.conf the applier writes, saying why no neighbour has BFD there.
pub const BOOT_NOTE: &str =
    "! ferrolb: each neighbor's BFD is configured by the speaker once its session is up\n";

/// `text` (a rendering) as FRR should boot from it: with [`BOOT_NOTE`] first and without any
/// neighbour's `bfd` and `bfd profile` lines, so a restarted FRR holds every neighbour's BFD
/// until the speaker releases it. The `bfd` section (profiles) stays.
pub fn boot_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + BOOT_NOTE.len());
    out.push_str(BOOT_NOTE);
    for line in text.lines() {
        if !is_neighbor_bfd(line) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// ` neighbor P bfd` or ` neighbor P bfd profile NAME`, as the template prints them in a
/// `router bgp` block (one space in; address-family lines have two).
fn is_neighbor_bfd(line: &str) -> bool {
    let Some(rest) = line.strip_prefix(" neighbor ") else {
        return false;
    };
    let words: Vec<&str> = rest.split(' ').collect();
    matches!(words.as_slice(), [_, "bfd"] | [_, "bfd", "profile", _])
}

/// Whether any neighbour of `model` has BFD configured: only then does the hold matter.
pub fn wants_bfd(model: &FrrConfig) -> bool {
    model
        .routers
        .iter()
        .any(|r| r.neighbors.iter().any(|n| n.bfd_profile.is_some()))
}

#[cfg(test)]
mod tests;
