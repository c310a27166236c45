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
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::l2::wire::ndp::Solicitation;
    use crate::views::ServiceKey;

    const OURS: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const CLIENT: Mac = Mac([2, 0, 0, 0, 0, 9]);

    fn owning(ips: &[&str], interfaces: &[&str]) -> Vec<L2Announcement> {
        vec![L2Announcement {
            service: ServiceKey::new("shop", "printer"),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            interfaces: interfaces.iter().map(|i| i.to_string()).collect(),
        }]
    }

    fn arp_request(dst: Mac, target: Ipv4Addr) -> Vec<u8> {
        let request = Arp {
            op: crate::l2::wire::arp::Op::Request,
            sender_mac: CLIENT,
            sender_ip: Ipv4Addr::new(10, 99, 0, 100),
            target_mac: Mac::ZERO,
            target_ip: target,
        };
        Frame {
            dst,
            src: CLIENT,
            ethertype: ETHERTYPE_ARP,
            payload: &request.to_bytes(),
        }
        .to_bytes()
    }

    #[test]
    fn a_new_owner_announces_at_once_then_every_repeat_for_the_quiet_period() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut announcer = Announcer::default();
        announcer.set(start, &owning(&["10.99.0.200"], &[]));
        let mut rounds = Vec::new();
        for ms in (0..9000).step_by(100) {
            if !announcer.due(at(ms)).is_empty() {
                rounds.push(ms);
            }
        }
        assert_eq!(rounds, [0, 1100, 2200, 3300, 4400]);
        assert_eq!(announcer.next_due(), None);

        // Confirmed at 3 s while announcing: the rounds go on until 8 s.
        let mut announcer = Announcer::default();
        announcer.set(start, &owning(&["10.99.0.200"], &[]));
        let mut rounds = Vec::new();
        for ms in (0..12000).step_by(100) {
            if ms == 3000 {
                announcer.set(at(ms), &owning(&["10.99.0.200"], &[]));
            }
            if !announcer.due(at(ms)).is_empty() {
                rounds.push(ms);
            }
        }
        assert_eq!(rounds, [0, 1100, 2200, 3300, 4400, 5500, 6600, 7700]);
        // Confirming after the rounds ended starts nothing new.
        announcer.set(at(20000), &owning(&["10.99.0.200"], &[]));
        assert!(announcer.due(at(20000)).is_empty());
        // A speaker rejoined: the rounds start over.
        announcer.reannounce(at(21000));
        let rounds: Vec<u64> = (21000..30000)
            .step_by(100)
            .filter(|ms| !announcer.due(at(*ms)).is_empty())
            .collect();
        assert_eq!(rounds, [21000, 22100, 23200, 24300, 25400]);
    }

    #[test]
    fn only_requests_for_owned_ips_on_allowed_interfaces_are_answered() {
        let ip = Ipv4Addr::new(10, 99, 0, 200);
        let mut announcer = Announcer::default();
        announcer.set(Instant::now(), &owning(&["10.99.0.200"], &["eth1"]));

        let (asked, reply) = announcer
            .answer("eth1", OURS, &arp_request(Mac::BROADCAST, ip))
            .expect("answered");
        assert_eq!(asked, IpAddr::V4(ip));
        let frame = Frame::parse(&reply).unwrap();
        assert_eq!((frame.dst, frame.src), (CLIENT, OURS));
        let arp = Arp::parse(frame.payload).unwrap();
        assert_eq!((arp.sender_mac, arp.sender_ip), (OURS, ip));
        // To our MAC directly: also answered.
        assert!(
            announcer
                .answer("eth1", OURS, &arp_request(OURS, ip))
                .is_some()
        );
        // Another interface, another IP, another host's MAC: not.
        assert!(
            announcer
                .answer("eth0", OURS, &arp_request(Mac::BROADCAST, ip))
                .is_none()
        );
        let other = Ipv4Addr::new(10, 99, 0, 201);
        assert!(
            announcer
                .answer("eth1", OURS, &arp_request(Mac::BROADCAST, other))
                .is_none()
        );
        assert!(
            announcer
                .answer("eth1", OURS, &arp_request(CLIENT, ip))
                .is_none()
        );
        // Garbage is ignored.
        assert!(announcer.answer("eth1", OURS, &[0u8; 10]).is_none());

        // Ownership lost: silent at once, nothing pending.
        announcer.set(Instant::now(), &[]);
        assert!(!announcer.owns(IpAddr::V4(ip)));
        assert!(
            announcer
                .answer("eth1", OURS, &arp_request(Mac::BROADCAST, ip))
                .is_none()
        );
        assert_eq!(announcer.next_due(), None);
    }

    #[test]
    fn solicitations_with_the_askers_address_get_an_advertisement() {
        let target: Ipv6Addr = "fd99::200".parse().unwrap();
        let mut announcer = Announcer::default();
        announcer.set(Instant::now(), &owning(&["fd99::200"], &[]));
        let solicit = |source_mac| {
            let ns = Solicitation {
                src: "fe80::9".parse().unwrap(),
                dst: ndp::solicited_node(target),
                target,
                source_mac,
            }
            .to_bytes();
            Frame {
                dst: ndp::multicast_mac(ndp::solicited_node(target)),
                src: CLIENT,
                ethertype: ETHERTYPE_IPV6,
                payload: &ns,
            }
            .to_bytes()
        };
        let (_, reply) = announcer
            .answer("eth0", OURS, &solicit(Some(CLIENT)))
            .expect("answered");
        let frame = Frame::parse(&reply).unwrap();
        assert_eq!((frame.dst, frame.src), (CLIENT, OURS));
        let Ndp::Advertisement(na) = ndp::parse(frame.payload).unwrap() else {
            panic!("not an advertisement");
        };
        assert_eq!(
            (na.target, na.target_mac, na.solicited),
            (target, Some(OURS), true)
        );
        // Without the asker's link-layer address: dropped, as MetalLB does.
        assert!(announcer.answer("eth0", OURS, &solicit(None)).is_none());
    }

    #[test]
    fn announcements_are_gratuitous_arp_or_unsolicited_advertisements() {
        let v4 = announcement_frames("10.99.0.200".parse().unwrap(), OURS);
        assert_eq!(v4.len(), 2);
        for bytes in &v4 {
            let frame = Frame::parse(bytes).unwrap();
            assert_eq!(frame.dst, Mac::BROADCAST);
            let arp = Arp::parse(frame.payload).unwrap();
            assert_eq!(arp.sender_ip, arp.target_ip);
            assert_eq!(arp.sender_mac, OURS);
        }
        let v6 = announcement_frames("fd99::200".parse().unwrap(), OURS);
        let frame = Frame::parse(&v6[0]).unwrap();
        assert_eq!(frame.dst, Mac([0x33, 0x33, 0, 0, 0, 1]));
        let Ndp::Advertisement(na) = ndp::parse(frame.payload).unwrap() else {
            panic!("not an advertisement");
        };
        assert!(na.override_cache && !na.solicited);
    }
}
