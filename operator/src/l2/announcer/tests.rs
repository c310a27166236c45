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
