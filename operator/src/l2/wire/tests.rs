use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::arp::{Arp, Op};
use super::ndp::{self, Advertisement, Ndp, Solicitation};
use super::{Frame, Mac, WireError};

const A: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);
const B: Mac = Mac([0x02, 0, 0, 0, 0, 0x0b]);

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn an_arp_request_reads_field_by_field_and_is_answered_by_its_owner() {
    // Who has 10.99.0.200? Tell 10.99.0.100 (02:00:00:00:00:0b), as arping sends it.
    let bytes = hex("000108000604000102000000000b0a6300640000000000000a6300c8");
    let request = Arp::parse(&bytes).unwrap();
    assert_eq!(
        request,
        Arp {
            op: Op::Request,
            sender_mac: B,
            sender_ip: Ipv4Addr::new(10, 99, 0, 100),
            target_mac: Mac::ZERO,
            target_ip: Ipv4Addr::new(10, 99, 0, 200),
        }
    );
    assert_eq!(request.to_bytes().to_vec(), bytes);
    assert!(request.asks_for(Ipv4Addr::new(10, 99, 0, 200)));
    assert!(!request.asks_for(Ipv4Addr::new(10, 99, 0, 201)));
    let reply = request.reply(A);
    assert_eq!(reply.op, Op::Reply);
    assert_eq!((reply.sender_mac, reply.sender_ip), (A, request.target_ip));
    assert_eq!((reply.target_mac, reply.target_ip), (B, request.sender_ip));
    assert_eq!(Arp::parse(&reply.to_bytes()).unwrap(), reply);

    let announce = Arp::gratuitous(A, Ipv4Addr::new(10, 99, 0, 200));
    assert_eq!(announce.sender_ip, announce.target_ip);
    assert_eq!(announce.target_mac, Mac::BROADCAST);
    // A gratuitous packet asks nobody anything.
    let probe = Arp::gratuitous_request(A, announce.target_ip);
    assert_eq!((probe.op, probe.target_mac), (Op::Request, Mac::ZERO));
    assert!(!probe.asks_for(announce.target_ip));
}

#[test]
fn arp_other_than_ethernet_ipv4_or_short_is_refused_by_name() {
    let good = Arp::gratuitous(A, Ipv4Addr::new(10, 0, 0, 1)).to_bytes();
    let mut token_ring = good;
    token_ring[1] = 6;
    assert_eq!(
        Arp::parse(&token_ring).unwrap_err().to_string(),
        "ARP hardware type: unsupported value 0x6"
    );
    let mut rarp = good;
    rarp[7] = 3;
    assert!(matches!(
        Arp::parse(&rarp),
        Err(WireError::Unsupported {
            what: "ARP operation",
            ..
        })
    ));
    assert_eq!(
        Arp::parse(&good[..27]).unwrap_err().to_string(),
        "ARP packet: 27 bytes, need 28"
    );
    // Ethernet padding after the packet is ignored.
    let mut padded = good.to_vec();
    padded.extend_from_slice(&[0; 18]);
    assert!(Arp::parse(&padded).is_ok());
}

#[test]
fn frames_are_padded_to_the_ethernet_minimum_and_read_back() {
    let arp = Arp::gratuitous(A, Ipv4Addr::new(10, 0, 0, 1)).to_bytes();
    let frame = Frame {
        dst: Mac::BROADCAST,
        src: A,
        ethertype: super::ETHERTYPE_ARP,
        payload: &arp,
    };
    let bytes = frame.to_bytes();
    assert_eq!(bytes.len(), 60);
    let back = Frame::parse(&bytes).unwrap();
    assert_eq!(
        (back.dst, back.src, back.ethertype),
        (Mac::BROADCAST, A, 0x0806)
    );
    assert_eq!(Arp::parse(back.payload).unwrap(), Arp::parse(&arp).unwrap());
    assert_eq!(A.to_string(), "02:00:00:00:00:0a");
}

/// A solicitation for 2001:db8::5 from fe80::1 (02:00:00:00:00:01), its checksum computed by
/// an independent implementation.
const SOLICITATION: &str = "6000000000203afffe800000000000000000000000000001ff0200000000000000000001ff00000587004b590000000020010db80000000000000000000000050101020000000001";

#[test]
fn a_solicitation_reads_with_its_checksum_and_builds_back_byte_for_byte() {
    let bytes = hex(SOLICITATION);
    let Ndp::Solicitation(ns) = ndp::parse(&bytes).unwrap() else {
        panic!("not a solicitation");
    };
    let target: Ipv6Addr = "2001:db8::5".parse().unwrap();
    assert_eq!(ns.target, target);
    assert_eq!(ns.src, "fe80::1".parse::<Ipv6Addr>().unwrap());
    assert_eq!(ns.dst, ndp::solicited_node(target));
    assert_eq!(ns.source_mac, Some(Mac([2, 0, 0, 0, 0, 1])));
    assert_eq!(ns.to_bytes(), bytes);

    let mut corrupt = bytes.clone();
    corrupt[60] ^= 1;
    assert!(matches!(
        ndp::parse(&corrupt),
        Err(WireError::Checksum { .. })
    ));
    let mut forwarded = bytes.clone();
    forwarded[7] = 254;
    assert_eq!(
        ndp::parse(&forwarded).unwrap_err().to_string(),
        "NDP hop limit: unsupported value 0xfe"
    );
}

#[test]
fn advertisements_answer_to_the_asker_or_to_all_nodes_in_dad() {
    let ns = Solicitation {
        src: "fe80::1".parse().unwrap(),
        dst: ndp::solicited_node("2001:db8::5".parse().unwrap()),
        target: "2001:db8::5".parse().unwrap(),
        source_mac: Some(B),
    };
    let na = Advertisement::answer(&ns, A);
    assert_eq!(
        (na.dst, na.solicited, na.override_cache),
        (ns.src, true, true)
    );
    assert_eq!(na.target_mac, Some(A));
    assert_eq!(ndp::parse(&na.to_bytes()).unwrap(), Ndp::Advertisement(na));

    let dad = Solicitation {
        src: Ipv6Addr::UNSPECIFIED,
        source_mac: None,
        ..ns
    };
    let to_all = Advertisement::answer(&dad, A);
    assert_eq!((to_all.dst, to_all.solicited), (ndp::ALL_NODES, false));

    let unsolicited = Advertisement::unsolicited(A, ns.target);
    assert_eq!(
        ndp::parse(&unsolicited.to_bytes()).unwrap(),
        Ndp::Advertisement(unsolicited)
    );
}

#[test]
fn multicast_groups_and_their_ethernet_addresses() {
    let ip: Ipv6Addr = "2001:db8::1:2:3".parse().unwrap();
    let group = ndp::solicited_node(ip);
    assert_eq!(group, "ff02::1:ff02:3".parse::<Ipv6Addr>().unwrap());
    assert_eq!(
        ndp::multicast_mac(group),
        Mac([0x33, 0x33, 0xff, 0x02, 0x00, 0x03])
    );
}

#[test]
fn macs_read_as_sysfs_prints_them() {
    assert_eq!(
        "02:00:0a:ff:00:9c".parse::<Mac>(),
        Ok(Mac([2, 0, 0x0a, 0xff, 0, 0x9c]))
    );
    for bad in [
        "",
        "02:00:0a:ff:00",
        "02:00:0a:ff:00:9c:01",
        "2:00:0a:ff:00:9c",
        "zz:00:0a:ff:00:9c",
    ] {
        assert_eq!(bad.parse::<Mac>(), Err(WireError::Mac), "{bad}");
    }
}

#[test]
fn malformed_ndp_options_are_errors() {
    let ns = Solicitation {
        src: "fe80::1".parse().unwrap(),
        dst: "ff02::1:ff00:5".parse().unwrap(),
        target: "2001:db8::5".parse().unwrap(),
        source_mac: Some(B),
    };
    let mut bytes = ns.to_bytes();
    // Option length 0 would loop forever in a careless reader.
    bytes[40 + 25] = 0;
    let fixed = ndp::checksum(ns.src, ns.dst, &{
        let mut m = bytes[40..].to_vec();
        m[2] = 0;
        m[3] = 0;
        m
    });
    bytes[42..44].copy_from_slice(&fixed.to_be_bytes());
    assert_eq!(
        ndp::parse(&bytes).unwrap_err().to_string(),
        "NDP option length: unsupported value 0x0"
    );
}

fn mac() -> impl Strategy<Value = Mac> {
    any::<[u8; 6]>().prop_map(Mac)
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Frame::parse(&bytes);
        let _ = Arp::parse(&bytes);
        let _ = ndp::parse(&bytes);
        // The same bytes behind a valid IPv6/ICMPv6 header reach the option reader.
        let mut packet = hex(SOLICITATION)[..64].to_vec();
        packet.extend_from_slice(&bytes);
        let length = (packet.len() - 40) as u16;
        packet[4..6].copy_from_slice(&length.to_be_bytes());
        packet[42..44].copy_from_slice(&[0, 0]);
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).unwrap());
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).unwrap());
        let sum = ndp::checksum(src, dst, &packet[40..]);
        packet[42..44].copy_from_slice(&sum.to_be_bytes());
        let checksum_failed = matches!(ndp::parse(&packet), Err(WireError::Checksum { .. }));
        prop_assert!(!checksum_failed, "the recomputed checksum was refused");
    }

    #[test]
    fn arp_round_trips(request in any::<bool>(), sm in mac(), tm in mac(), si in any::<[u8; 4]>(), ti in any::<[u8; 4]>()) {
        let arp = Arp {
            op: if request { Op::Request } else { Op::Reply },
            sender_mac: sm,
            sender_ip: Ipv4Addr::from(si),
            target_mac: tm,
            target_ip: Ipv4Addr::from(ti),
        };
        prop_assert_eq!(Arp::parse(&arp.to_bytes()).unwrap(), arp);
    }

    #[test]
    fn macs_print_and_parse_back(m in mac()) {
        prop_assert_eq!(m.to_string().parse::<Mac>(), Ok(m));
    }

    #[test]
    fn ndp_round_trips(src in v6(), dst in v6(), target in v6(), m in proptest::option::of(mac()), flags in any::<[bool; 3]>()) {
        let ns = Solicitation { src, dst, target, source_mac: m };
        prop_assert_eq!(ndp::parse(&ns.to_bytes()).unwrap(), Ndp::Solicitation(ns));
        let na = Advertisement {
            src, dst, router: flags[0], solicited: flags[1], override_cache: flags[2], target, target_mac: m,
        };
        prop_assert_eq!(ndp::parse(&na.to_bytes()).unwrap(), Ndp::Advertisement(na));
    }
}
