use crate::frr::delta::diff;
use crate::frr::fixtures::{advertisement, bfd, model, peer, pool, service};
use crate::frr::model::FrrConfig;
use crate::frr::{Dialect, render};

/// A node's model with one of everything the spelling knows: a BFD profile away from every
/// default, peers with every session attribute, both families, communities and local
/// preference, and a VRF.
fn everything() -> FrrConfig {
    let fast = "receiveInterval: 100, transmitInterval: 150, detectMultiplier: 5, echoMode: true, echoInterval: 60, passiveMode: true, minimumTtl: 250";
    let session = ", bfdProfile: fast, holdTime: 9s, keepaliveTime: 3s, connectTime: 2s, password: s3cret, ebgpMultiHop: true, peerPort: 1179, enableGracefulRestart: true";
    let attributes = r#", communities: ["64500:1"], localPref: 150"#;
    model(
        &[
            pool("web", "198.51.100.0/24"),
            pool("six", "2001:db8::/64"),
            bfd("fast", fast),
            peer("tor1", "10.0.0.1", session),
            peer("tor2", "10.0.0.2", ""),
            peer("lan", "10.0.0.3", ", vrf: red, sourceAddress: 10.0.0.100"),
            advertisement("all", "web", attributes),
            advertisement("v6", "six", ", peers: [tor2]"),
            service("a", "198.51.100.10", ""),
            service("b", "2001:db8::10", ""),
        ]
        .concat(),
    )
}

/// The lines of `text` that are commands (not `!` separators), sorted.
fn commands(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.trim() != "!")
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn every_object_is_spelled_as_the_template_renders_it() {
    let model = everything();
    assert!(
        !model.bfd_profiles.is_empty() && model.routers.len() == 2,
        "{model:#?}"
    );
    // From a blank FRR the delta types every object, each spelled here.
    let blank = FrrConfig::default();
    let typed = diff(&blank, &model).unwrap().commands;
    for dialect in Dialect::ALL {
        let text = render(&model, dialect).unwrap();
        // What the template renders that is never typed: the first line, and the kernel's
        // forwarding setting, which zebra reads.
        let rendered: Vec<String> = commands(&text)
            .into_iter()
            .filter(|l| l != "frr defaults traditional" && !l.ends_with(" forwarding"))
            .collect();
        let mut spelled: Vec<String> = typed
            .iter()
            .filter(|l| dialect.sections().contains(&"nht") || !l.contains(" nht "))
            .map(|l| match dialect.prints_maximum_hops() {
                true => l.clone(),
                false => l.replace(" ebgp-multihop 255", " ebgp-multihop"),
            })
            .collect();
        spelled.sort();
        assert_eq!(
            spelled, rendered,
            "{dialect:?}: typed from blank vs rendered"
        );
    }
}
