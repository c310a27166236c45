//! What a node's responder says, decided without sockets: which requests it answers, with
//! which bytes, and when it announces an IP it has just become owner of.
//!
//! - It answers an ARP request only if it came to the broadcast address or to the receiving
//!   interface, asks for an IP this node owns now, and that IP may be answered for on that
//!   interface; the reply carries the interface's MAC. Neighbour solicitations likewise, and
//!   only those carrying the asker's link-layer address (as MetalLB).
//! - A newly owned IP is announced at once, then every [`REPEAT`] until [`QUIET`] after the
//!   last time ownership was confirmed: an ARP request and reply (sender = target = the IP)
//!   to broadcast for IPv4, an unsolicited advertisement to all nodes for IPv6.
//! - An IP that is no longer owned is not answered for from that moment, and its pending
//!   announcements are dropped.
//!
//! Time is an argument, so the schedule is tested without waiting.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::L2Announcement;
use super::interfaces::answers_on;
use super::wire::arp::Arp;
use super::wire::ndp::{self, Advertisement, Ndp};
use super::wire::{ETHERTYPE_ARP, ETHERTYPE_IPV6, Frame, Mac};

/// Gap between announcements of a newly owned IP (MetalLB's 1100 ms).
pub(crate) const REPEAT: Duration = Duration::from_millis(1100);
/// How long after the last confirmation of ownership announcements go on (MetalLB's 5 s).
pub(crate) const QUIET: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
struct Owned {
    /// Interfaces its advertisements name (empty: every answering interface).
    interfaces: BTreeSet<String>,
    /// When ownership was last confirmed.
    confirmed: Instant,
    /// When it is announced next.
    next: Option<Instant>,
}

/// The IPs a node owns and their announcement schedule.
#[derive(Clone, Debug, Default)]
pub(crate) struct Announcer {
    owned: BTreeMap<IpAddr, Owned>,
}

impl Announcer {
    /// Makes `announcements` the IPs owned, at `now`: new ones are announced at once,
    /// confirmed ones keep being announced until [`QUIET`] after now, others are dropped.
    pub(crate) fn set(&mut self, now: Instant, announcements: &[L2Announcement]) {
        let mut owned = BTreeMap::new();
        for announcement in announcements {
            for ip in &announcement.ips {
                // A confirmation extends a running schedule; it does not restart one that
                // has finished (passes confirm ownership on every change).
                let next = match self.owned.get(ip) {
                    Some(was) => was.next,
                    None => Some(now),
                };
                owned.insert(
                    *ip,
                    Owned {
                        interfaces: announcement.interfaces.clone(),
                        confirmed: now,
                        next,
                    },
                );
            }
        }
        self.owned = owned;
    }

    /// Starts every owned IP's announcements again at `now`, for [`QUIET`].
    pub(crate) fn reannounce(&mut self, now: Instant) {
        for owned in self.owned.values_mut() {
            owned.confirmed = now;
            owned.next = Some(now);
        }
    }

    /// Whether `ip` is owned now.
    #[cfg(test)]
    pub(crate) fn owns(&self, ip: IpAddr) -> bool {
        self.owned.contains_key(&ip)
    }

    /// The IPs due for an announcement at `now`, each with the interfaces it may be
    /// announced on (empty: all); their next announcement is scheduled.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(IpAddr, BTreeSet<String>)> {
        let mut out = Vec::new();
        for (ip, owned) in &mut self.owned {
            let Some(next) = owned.next.filter(|n| *n <= now) else {
                continue;
            };
            let following = next.max(now) + REPEAT;
            owned.next = (following <= owned.confirmed + QUIET).then_some(following);
            out.push((*ip, owned.interfaces.clone()));
        }
        out
    }

    /// When [`Announcer::due`] next has something.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.owned.values().filter_map(|o| o.next).min()
    }

    fn allowed(&self, ip: IpAddr, interface: &str) -> bool {
        self.owned
            .get(&ip)
            .is_some_and(|o| answers_on(&o.interfaces, interface))
    }

    /// The IPs owned now, each with the interfaces it may be announced on (empty: all).
    pub(crate) fn owned(&self) -> impl Iterator<Item = (IpAddr, &BTreeSet<String>)> {
        self.owned.iter().map(|(ip, o)| (*ip, &o.interfaces))
    }

    /// The IP asked for and the frame to send back for `frame`, received on `interface`
    /// whose MAC is `mac`, if it asks for an IP this node answers for there.
    pub(crate) fn answer(
        &self,
        interface: &str,
        mac: Mac,
        frame: &[u8],
    ) -> Option<(IpAddr, Vec<u8>)> {
        let frame = Frame::parse(frame).ok()?;
        match frame.ethertype {
            ETHERTYPE_ARP => {
                if frame.dst != Mac::BROADCAST && frame.dst != mac {
                    return None;
                }
                let request = Arp::parse(frame.payload).ok()?;
                if !request.asks_for(request.target_ip)
                    || !self.allowed(IpAddr::V4(request.target_ip), interface)
                {
                    return None;
                }
                let reply = request.reply(mac).to_bytes();
                Some((
                    IpAddr::V4(request.target_ip),
                    Frame {
                        dst: request.sender_mac,
                        src: mac,
                        ethertype: ETHERTYPE_ARP,
                        payload: &reply,
                    }
                    .to_bytes(),
                ))
            }
            ETHERTYPE_IPV6 => {
                let Ok(Ndp::Solicitation(solicitation)) = ndp::parse(frame.payload) else {
                    return None;
                };
                let asker = solicitation.source_mac?;
                if !self.allowed(IpAddr::V6(solicitation.target), interface) {
                    return None;
                }
                let advertisement = Advertisement::answer(&solicitation, mac);
                let dst = if solicitation.src.is_unspecified() {
                    ndp::multicast_mac(ndp::ALL_NODES)
                } else {
                    asker
                };
                let packet = advertisement.to_bytes();
                Some((
                    IpAddr::V6(solicitation.target),
                    Frame {
                        dst,
                        src: mac,
                        ethertype: ETHERTYPE_IPV6,
                        payload: &packet,
                    }
                    .to_bytes(),
                ))
            }
            _ => None,
        }
    }
}

/// The frames announcing that `ip` is at `mac`: a gratuitous ARP request and reply to
/// broadcast for IPv4, an unsolicited advertisement to all nodes for IPv6.
pub(crate) fn announcement_frames(ip: IpAddr, mac: Mac) -> Vec<Vec<u8>> {
    match ip {
        IpAddr::V4(v4) => [Arp::gratuitous_request(mac, v4), Arp::gratuitous(mac, v4)]
            .iter()
            .map(|arp| {
                Frame {
                    dst: Mac::BROADCAST,
                    src: mac,
                    ethertype: ETHERTYPE_ARP,
                    payload: &arp.to_bytes(),
                }
                .to_bytes()
            })
            .collect(),
        IpAddr::V6(v6) => {
            let packet = Advertisement::unsolicited(mac, v6).to_bytes();
            vec![
                Frame {
                    dst: ndp::multicast_mac(ndp::ALL_NODES),
                    src: mac,
                    ethertype: ETHERTYPE_IPV6,
                    payload: &packet,
                }
                .to_bytes(),
            ]
        }
    }
}

#[cfg(test)]
mod tests;
