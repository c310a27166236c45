//! ferrolb's input edges, each as one function of raw bytes: what arrives from a network,
//! a user or FRR, taken through the code that reads it and as far past it as the bytes
//! allow. None may panic; where reading succeeds, each checks what must then hold, and
//! panics if it does not.
//!
//! The fuzz targets (`fuzz/`, libFuzzer through cargo-fuzz) call these, and the corpus
//! replay test (`tests/fuzz_corpus.rs`) runs every kept input through them on each test
//! run, so an input that once failed stays fixed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;

use crate::config::LoadOptions;
use crate::frr::Dialect;
use crate::l2::L2Announcement;
use crate::l2::announcer::Announcer;
use crate::l2::members::seal::{Opener, Sealer};
use crate::l2::wire::arp::Arp;
use crate::l2::wire::{ETHERTYPE_ARP, ETHERTYPE_IPV6, Frame, Mac, ndp};
use crate::views::{ServiceKey, ServiceScope};

/// The namespace the targets load configuration in.
const NAMESPACE: &str = "metallb-system";

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A received frame, as the layer-2 responder takes it: read as Ethernet, ARP and neighbour
/// discovery, and answered by a node that owns 192.0.2.10 and 2001:db8::10. When the first
/// byte is odd, the ICMPv6 checksum is set right first, so the reader past it is reached.
/// Checked: an answer is a frame that reads back, from this node's MAC, for an owned IP.
pub fn l2_frame(data: &[u8]) {
    let mut frame = data.to_vec();
    if data.first().is_some_and(|b| b & 1 == 1) {
        fix_icmpv6_checksum(&mut frame);
    }
    if let Ok(parsed) = Frame::parse(&frame) {
        let _ = Arp::parse(parsed.payload);
        let _ = ndp::parse(parsed.payload);
    }
    let _ = Arp::parse(&frame);
    let _ = ndp::parse(&frame);
    let mac = Mac([2, 0, 0, 0, 0, 1]);
    let mut announcer = Announcer::default();
    let owned: [IpAddr; 2] = [
        IpAddr::from([192, 0, 2, 10]),
        "2001:db8::10".parse().expect("an IPv6 address"),
    ];
    announcer.set(
        Instant::now(),
        &[L2Announcement {
            service: ServiceKey::new("shop", "web"),
            ips: owned.to_vec(),
            interfaces: std::collections::BTreeSet::new(),
        }],
    );
    if let Some((ip, reply)) = announcer.answer("eth0", mac, &frame) {
        assert!(owned.contains(&ip), "answered for {ip}, not owned");
        let reply = Frame::parse(&reply).expect("the answer reads back");
        assert_eq!(reply.src, mac);
        match reply.ethertype {
            ETHERTYPE_ARP => {
                let arp = Arp::parse(reply.payload).expect("the ARP reply reads back");
                assert_eq!((IpAddr::V4(arp.sender_ip), arp.sender_mac), (ip, mac));
            }
            ETHERTYPE_IPV6 => {
                assert!(
                    ndp::parse(reply.payload).is_ok(),
                    "the advertisement reads back"
                );
            }
            other => panic!("answered with ethertype {other:#x}"),
        }
    }
}

/// Sets the ICMPv6 checksum of the IPv6 packet in an Ethernet frame (or of a bare packet).
fn fix_icmpv6_checksum(frame: &mut [u8]) {
    let start = if frame.len() >= 14 && frame[12..14] == ETHERTYPE_IPV6.to_be_bytes() {
        14
    } else {
        0
    };
    let packet = &mut frame[start..];
    if packet.len() < 44 {
        return;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).expect("16 bytes"));
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).expect("16 bytes"));
    let declared = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    let end = (40 + declared).min(packet.len());
    let message = &mut packet[40..end];
    if message.len() < 4 {
        return;
    }
    message[2] = 0;
    message[3] = 0;
    let sum = ndp::checksum(src, dst, message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
}

/// A manifest (YAML or JSON, any metallb.io kind, Services, Nodes), as `ferrolb validate`,
/// `render` and the controller read it: read, loaded, and when it loads, allocated and
/// rendered to frr.conf for its first node. Checked: every IP allocated from a pool is in it.
pub fn manifest(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(read) = crate::manifest::parse(text, "fuzz", NAMESPACE) else {
        return;
    };
    let objects = read.objects;
    let options = LoadOptions {
        namespace: NAMESPACE.into(),
    };
    let Ok(config) = crate::config::load(&objects, &options) else {
        return;
    };
    let scope = ServiceScope::default();
    // IPs ferrolb hands out come from the pool the decision names. (A Service of another
    // loadBalancerClass keeps whatever its own implementation wrote: no pool, not checked.)
    for decision in crate::dry_run::allocate(&config, &objects, &scope).values() {
        let Some(name) = &decision.pool else { continue };
        let pool = config
            .pools
            .get(name)
            .unwrap_or_else(|| panic!("{}: allocated from {name}, not a pool", decision.key));
        for ip in &decision.ingress {
            assert!(
                pool.contains(*ip),
                "{}: {ip} allocated from {name}, outside it",
                decision.key
            );
        }
    }
    let node = objects
        .nodes
        .first()
        .and_then(|n| n.metadata.name.clone())
        .unwrap_or_else(|| "n1".into());
    let dry = crate::dry_run::prepare(config, &objects, &node, scope);
    let _ = dry.render_frr(crate::frr::NodeFacts::default(), Dialect::default());
    let _ = dry.announcements();
}

/// A legacy MetalLB ConfigMap, as `ferrolb convert` reads it. Checked: what it converts to
/// reads back as manifests.
pub fn legacy_config(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(converted) = crate::convert::convert(text, NAMESPACE) else {
        return;
    };
    if let Ok(yaml) = converted.yaml()
        && let Err(error) = crate::manifest::parse(&yaml, "converted", NAMESPACE)
    {
        panic!("the conversion does not read back: {error}\n{yaml}");
    }
}

/// The body of a request to the webhook, as its handler takes it, judged against a cluster
/// holding a pool, a BFD profile and a peer that uses it. Checked: the answer is an
/// AdmissionReview with a response for the request's UID.
pub fn admission_review(data: &[u8]) {
    let Ok(review) = serde_json::from_slice::<AdmissionReview<DynamicObject>>(data) else {
        return;
    };
    let uid = review.request.as_ref().map(|r| r.uid.clone());
    let objects = crate::manifest::parse(CLUSTER, "cluster", NAMESPACE)
        .expect("the cluster's manifests read")
        .objects;
    let options = LoadOptions {
        namespace: NAMESPACE.into(),
    };
    let answer = crate::webhook::answer(&objects, &options, review);
    let response = answer.response.as_ref().expect("a response");
    if let Some(uid) = uid {
        assert_eq!(response.uid, uid);
    }
    let _ = serde_json::to_vec(&answer).expect("the answer is JSON");
}

/// The cluster the admission target judges against.
const CLUSTER: &str = "\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: pool, namespace: metallb-system}
spec: {addresses: [192.0.2.0/24]}
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: fast, namespace: metallb-system}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.1, bfdProfile: fast}
";

/// What FRR's vty sockets send back: split into replies as the vty client does, and each
/// reply read as `show bgp … json`, `show bfd peers json` and a running configuration.
pub fn vty_reply(data: &[u8]) {
    let mut buffer = data.to_vec();
    while let Some(reply) = crate::frr::vty::take_reply(&mut buffer) {
        frr_text(&reply.output);
    }
    frr_text(&String::from_utf8_lossy(data));
}

fn frr_text(text: &str) {
    let _ = crate::frr::sessions::bgp_sessions(text);
    let _ = crate::frr::sessions::bfd_sessions(text);
    let normalised = crate::frr::running::normalise_running(text);
    let _ = crate::frr::running::canonical(&normalised);
    assert!(crate::frr::running::same_configuration(text, text));
    let _ = crate::frr::running::first_difference(text, &normalised);
}

/// A datagram on the gossip port: checked as the receiver does (key, stamp, sender), and,
/// sealed with the cluster key (a member's payload, however odd), given to the membership
/// protocol. Checked: a datagram that opens once does not open twice.
pub fn gossip_datagram(data: &[u8]) {
    let key = b"fuzzing key";
    let now = crate::l2::members::now_micros();
    let mut opener = Opener::new(key, "n1", 0, data.first().is_some_and(|b| b & 1 == 1));
    if opener.open(data, now).is_ok() && data.first() == Some(&3) {
        assert!(opener.open(data, now).is_err(), "a datagram opened twice");
    }
    let sealed = Sealer::new(key, "n2").seal(data, "n1", now);
    let opened = opener.open(&sealed, now).expect("a fresh datagram opens");
    crate::l2::members::feed(opened.payload);
}

/// One input edge: the bytes in, a panic when something is wrong.
pub type Target = fn(&[u8]);

/// The inputs of every target, by the name of its corpus directory.
pub const TARGETS: [(&str, Target); 6] = [
    ("l2_frame", l2_frame),
    ("manifest", manifest),
    ("legacy_config", legacy_config),
    ("admission_review", admission_review),
    ("vty_reply", vty_reply),
    ("gossip_datagram", gossip_datagram),
];

/// The targets, for lookup by name.
pub fn target(name: &str) -> Option<Target> {
    TARGETS
        .iter()
        .copied()
        .collect::<BTreeMap<_, _>>()
        .get(name)
        .copied()
}
