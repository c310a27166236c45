//! The gossip datagram: authenticated under the cluster key, and stamped so that a captured
//! datagram cannot be played back.
//!
//! Format 3 (this one): `3`, a 32-byte HMAC-SHA256 tag, the sender's node name (one length
//! byte, then the name), a stamp (8 bytes, big-endian), then foca's payload. The tag covers
//! everything but itself, and the name of the node the datagram is for, which is not sent:
//! a datagram is good only at the speaker it was sent to.
//!
//! The stamp is the sender's clock in microseconds, moved on by one when the clock has not
//! moved since the last datagram, so a sender's stamps strictly increase for the life of its
//! process; a restarted sender starts at its clock, past its predecessor's last stamp. A
//! receiver takes a datagram only when
//!
//! - its stamp is above the last it took from that sender (a replay, or a datagram overtaken
//!   on the way, is dropped: gossip is made for lost datagrams);
//! - its stamp is not before the receiver started, so a receiver with no last stamp yet is
//!   protected too (a sender whose clock is behind by a few milliseconds loses as many
//!   milliseconds of datagrams to a speaker that has just started);
//! - its stamp is within [`WINDOW`] of the receiver's clock. Node clocks must agree within
//!   that window (NTP keeps them within milliseconds); a sender whose clock is off is named
//!   in a warning.
//!
//! Format 2 (ferrolb 0.1) had the tag but neither name nor stamp. It is read only when asked
//! for ([`Opener::new`]'s `accept_format_2`), during a rolling upgrade from 0.1: then
//! replays of format-2 datagrams are possible again, so the option is meant to be switched
//! off once every speaker runs this version.

use std::collections::HashMap;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a datagram's stamp may be from the receiver's clock.
pub const WINDOW: Duration = Duration::from_secs(30);
/// Bytes of the authentication tag.
const TAG: usize = 32;
/// The format written.
const FORMAT: u8 = 3;
/// The format of ferrolb 0.1, read on request.
const FORMAT_2: u8 = 2;

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key")
}

/// The format-3 tag of `rest` (what follows the tag) for the speaker of node `to`.
fn tag(key: &[u8], to: &str, rest: &[u8]) -> Hmac<Sha256> {
    let to = &to.as_bytes()[..cut(to)];
    let mut mac = mac(key);
    mac.update(&[FORMAT, u8::try_from(to.len()).unwrap_or(u8::MAX)]);
    mac.update(to);
    mac.update(rest);
    mac
}

/// The length `name` is cut to: at most 255 bytes, at a character.
fn cut(name: &str) -> usize {
    let mut end = name.len().min(usize::from(u8::MAX));
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Seals this speaker's datagrams.
#[derive(Debug)]
pub struct Sealer {
    key: Vec<u8>,
    node: String,
    last: u64,
}

impl Sealer {
    /// A sealer for `node`'s datagrams under `key`. Node names are at most 253 bytes (a DNS
    /// name, as Kubernetes requires); a longer one is cut.
    pub fn new(key: &[u8], node: &str) -> Sealer {
        Sealer {
            key: key.to_vec(),
            node: node[..cut(node)].to_string(),
            last: 0,
        }
    }

    /// `payload` for the speaker of node `to` in format 3, stamped `now` (microseconds since
    /// the epoch) or just after the last stamp if the clock has not moved past it.
    pub fn seal(&mut self, payload: &[u8], to: &str, now: u64) -> Vec<u8> {
        self.last = now.max(self.last.saturating_add(1));
        let name = self.node.as_bytes();
        let mut out = Vec::with_capacity(1 + TAG + 1 + name.len() + 8 + payload.len());
        out.push(FORMAT);
        out.extend_from_slice(&[0; TAG]);
        out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(name);
        out.extend_from_slice(&self.last.to_be_bytes());
        out.extend_from_slice(payload);
        let tag = tag(&self.key, to, &out[1 + TAG..]);
        out[1..=TAG].copy_from_slice(&tag.finalize().into_bytes());
        out
    }

    /// `payload` in format 2, for speakers of ferrolb 0.1.
    pub fn seal_format_2(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = mac(&self.key);
        mac.update(&[FORMAT_2]);
        mac.update(payload);
        let mut out = Vec::with_capacity(1 + TAG + payload.len());
        out.push(FORMAT_2);
        out.extend_from_slice(&mac.finalize().into_bytes());
        out.extend_from_slice(payload);
        out
    }
}

/// A datagram taken.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// Its payload, for foca.
    pub payload: &'a [u8],
    /// Whether it came in format 2 (from a ferrolb 0.1 speaker).
    pub format_2: bool,
}

/// Why a datagram was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Too short, an unknown format, or a tag that does not verify under the key.
    NotSigned,
    /// Format 2, not accepted.
    Format2,
    /// Signed by `sender`, but not newer than the last datagram taken from it, or than the
    /// receiver's start.
    Replayed {
        /// The sender's node name.
        sender: String,
    },
    /// Signed by `sender`, with a stamp `ahead_ms` from this node's clock (negative: behind),
    /// more than [`WINDOW`].
    OutOfWindow {
        /// The sender's node name.
        sender: String,
        /// Its stamp minus this node's clock, in milliseconds.
        ahead_ms: i64,
    },
}

/// Checks the datagrams this speaker receives.
#[derive(Debug)]
pub struct Opener {
    key: Vec<u8>,
    node: String,
    /// When the receiver started (microseconds since the epoch).
    started: u64,
    accept_format_2: bool,
    /// The last stamp taken from each sender.
    last: HashMap<String, u64>,
}

impl Opener {
    /// An opener for datagrams sealed under `key` for the speaker of `node`, started at
    /// `started` (microseconds since the epoch); `accept_format_2` also takes ferrolb 0.1's
    /// unstamped datagrams.
    pub fn new(key: &[u8], node: &str, started: u64, accept_format_2: bool) -> Opener {
        Opener {
            key: key.to_vec(),
            node: node.to_string(),
            started,
            accept_format_2,
            last: HashMap::new(),
        }
    }

    /// The payload of `datagram`, received when this node's clock reads `now`, if it is
    /// signed, fresh and not seen before.
    ///
    /// # Errors
    ///
    /// Why it is dropped.
    pub fn open<'a>(&mut self, datagram: &'a [u8], now: u64) -> Result<Opened<'a>, Refused> {
        if datagram.len() < 1 + TAG {
            return Err(Refused::NotSigned);
        }
        let (tag_sent, rest) = datagram[1..].split_at(TAG);
        match datagram[0] {
            FORMAT => {}
            FORMAT_2 => {
                let mut mac = mac(&self.key);
                mac.update(&[FORMAT_2]);
                mac.update(rest);
                mac.verify_slice(tag_sent).map_err(|_| Refused::NotSigned)?;
                return if self.accept_format_2 {
                    Ok(Opened {
                        payload: rest,
                        format_2: true,
                    })
                } else {
                    Err(Refused::Format2)
                };
            }
            _ => return Err(Refused::NotSigned),
        }
        let name_len = usize::from(*rest.first().ok_or(Refused::NotSigned)?);
        if rest.len() < 1 + name_len + 8 {
            return Err(Refused::NotSigned);
        }
        tag(&self.key, &self.node, rest)
            .verify_slice(tag_sent)
            .map_err(|_| Refused::NotSigned)?;
        let sender = std::str::from_utf8(&rest[1..=name_len]).map_err(|_| Refused::NotSigned)?;
        let (stamp, payload) = rest[1 + name_len..].split_at(8);
        let stamp = u64::from_be_bytes(stamp.try_into().map_err(|_| Refused::NotSigned)?);
        let window = u64::try_from(WINDOW.as_micros()).unwrap_or(u64::MAX);
        if stamp.abs_diff(now) > window {
            let ahead = i128::from(stamp) - i128::from(now);
            return Err(Refused::OutOfWindow {
                sender: sender.to_string(),
                ahead_ms: i64::try_from(ahead / 1_000).unwrap_or(i64::MAX),
            });
        }
        match self.last.get_mut(sender) {
            _ if stamp < self.started => {
                return Err(Refused::Replayed {
                    sender: sender.to_string(),
                });
            }
            Some(last) if stamp <= *last => {
                return Err(Refused::Replayed {
                    sender: sender.to_string(),
                });
            }
            Some(last) => *last = stamp,
            None => {
                self.last.insert(sender.to_string(), stamp);
            }
        }
        Ok(Opened {
            payload,
            format_2: false,
        })
    }

    /// Forgets senders last heard more than [`WINDOW`] before `now`: their old datagrams
    /// are out of the window anyway, so the table holds only the recently heard.
    pub fn forget_old(&mut self, now: u64) {
        let window = u64::try_from(WINDOW.as_micros()).unwrap_or(u64::MAX);
        let oldest = now.saturating_sub(window);
        self.last.retain(|_, last| *last >= oldest);
    }

    /// How many senders are remembered.
    pub fn remembered(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000_000;
    const SECOND: u64 = 1_000_000;

    /// The receiver of these tests: node `n0`, started a minute before `NOW`.
    fn opener(key: &[u8]) -> Opener {
        Opener::new(key, "n0", NOW - 60 * SECOND, false)
    }

    #[test]
    fn only_datagrams_sealed_with_the_key_for_this_node_open() {
        let sealed = Sealer::new(b"cluster key", "n1").seal(b"payload", "n0", NOW);
        let opened = opener(b"cluster key").open(&sealed, NOW);
        assert_eq!(
            opened,
            Ok(Opened {
                payload: b"payload",
                format_2: false
            })
        );
        assert_eq!(
            opener(b"another key").open(&sealed, NOW),
            Err(Refused::NotSigned)
        );
        // Sent to another node: no good here.
        let elsewhere = Sealer::new(b"cluster key", "n1").seal(b"payload", "n9", NOW);
        assert_eq!(
            opener(b"cluster key").open(&elsewhere, NOW),
            Err(Refused::NotSigned)
        );
        for byte in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[byte] ^= 1;
            let refused = Opener::new(b"cluster key", "n0", 0, true).open(&tampered, NOW);
            assert_eq!(refused, Err(Refused::NotSigned), "byte {byte}");
        }
        for len in 0..sealed.len() {
            let refused = Opener::new(b"cluster key", "n0", 0, true).open(&sealed[..len], NOW);
            assert_eq!(refused, Err(Refused::NotSigned), "{len}");
        }
    }

    #[test]
    fn a_datagram_is_taken_once_and_only_within_the_window() {
        let mut sealer = Sealer::new(b"k", "n1");
        let mut opener = opener(b"k");
        let first = sealer.seal(b"a", "n0", NOW);
        // The clock did not move: the stamp does.
        let second = sealer.seal(b"b", "n0", NOW);
        assert!(opener.open(&first, NOW).is_ok());
        assert_eq!(
            opener.open(&first, NOW),
            Err(Refused::Replayed {
                sender: "n1".into()
            })
        );
        assert!(opener.open(&second, NOW).is_ok());
        assert!(opener.open(&second, NOW).is_err());
        // Overtaken on the way: dropped like a replay.
        let third = sealer.seal(b"c", "n0", NOW + SECOND);
        let fourth = sealer.seal(b"d", "n0", NOW + 2 * SECOND);
        assert!(opener.open(&fourth, NOW).is_ok());
        assert!(opener.open(&third, NOW).is_err());

        // Too old or too new for this node's clock.
        let mut fresh = Opener::new(b"k", "n0", 0, false);
        let captured = Sealer::new(b"k", "n2").seal(b"alive", "n0", NOW);
        assert_eq!(
            fresh.open(&captured, NOW + 31 * SECOND),
            Err(Refused::OutOfWindow {
                sender: "n2".into(),
                ahead_ms: -31_000
            })
        );
        let ahead = Sealer::new(b"k", "n3").seal(b"x", "n0", NOW + 45 * SECOND);
        assert_eq!(
            fresh.open(&ahead, NOW),
            Err(Refused::OutOfWindow {
                sender: "n3".into(),
                ahead_ms: 45_000
            })
        );
        assert!(fresh.open(&captured, NOW + 29 * SECOND).is_ok());
    }

    #[test]
    fn a_speaker_that_has_just_started_takes_nothing_stamped_before_its_start() {
        let mut sealer = Sealer::new(b"k", "n1");
        let before = sealer.seal(b"alive", "n0", NOW - 1);
        let after = sealer.seal(b"alive", "n0", NOW + 1);
        let mut started = Opener::new(b"k", "n0", NOW, false);
        assert_eq!(
            started.open(&before, NOW + 2),
            Err(Refused::Replayed {
                sender: "n1".into()
            })
        );
        assert!(started.open(&after, NOW + 2).is_ok());
    }

    #[test]
    fn a_restarted_sender_is_heard_at_once_and_each_sender_has_its_own_count() {
        let mut opener = opener(b"k");
        let mut before = Sealer::new(b"k", "n1");
        for i in 0..100 {
            assert!(opener.open(&before.seal(b"p", "n0", NOW + i), NOW).is_ok());
        }
        // The new process starts at its clock, which is past every stamp the old one used.
        let mut after = Sealer::new(b"k", "n1");
        assert!(
            opener
                .open(&after.seal(b"p", "n0", NOW + SECOND), NOW)
                .is_ok()
        );
        // Another sender's stamps are its own.
        let other = Sealer::new(b"k", "n2").seal(b"p", "n0", NOW);
        assert!(opener.open(&other, NOW).is_ok());
        assert_eq!(opener.remembered(), 2);
        opener.forget_old(NOW + 30 * SECOND + 1);
        assert_eq!(opener.remembered(), 1);
        opener.forget_old(NOW + 32 * SECOND);
        assert_eq!(opener.remembered(), 0);
    }

    #[test]
    fn format_2_is_taken_only_when_asked_for() {
        let sealer = Sealer::new(b"k", "n1");
        let old = sealer.seal_format_2(b"payload");
        assert_eq!(old[0], 2);
        assert_eq!(opener(b"k").open(&old, NOW), Err(Refused::Format2));
        assert_eq!(
            Opener::new(b"k", "n0", NOW, true).open(&old, NOW),
            Ok(Opened {
                payload: b"payload",
                format_2: true
            })
        );
        assert_eq!(
            Opener::new(b"other", "n0", NOW, true).open(&old, NOW),
            Err(Refused::NotSigned)
        );
    }

    #[test]
    fn long_node_names_are_cut_at_a_character() {
        let name = "é".repeat(200);
        let sealed = Sealer::new(b"k", &name).seal(b"p", &name, NOW);
        assert_eq!(sealed[1 + TAG], 254);
        let mut opener = Opener::new(b"k", &name, 0, false);
        assert!(opener.open(&sealed, NOW).is_ok());
    }
}
