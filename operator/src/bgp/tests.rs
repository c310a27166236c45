use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::config::{self, LoadOptions};
use crate::views::{LbService, NodeView, ServiceKey, ServiceScope, ServingEndpoints};

/// Pools with advertisements of every kind (local preference, aggregation, node and Service selectors) and three peers, one on rack 2 only.
fn manifests() -> String {
    use crate::fixtures::{bgp_advertisement, peer, pool};
    [
        pool("bgp", r#"{addresses: [198.51.100.0/24, "2001:db8::/64"]}"#),
        pool("rack-2-only", "{addresses: [203.0.113.0/24]}"),
        pool("quiet", "{addresses: [192.0.2.0/24]}"),
        bgp_advertisement("hosts", r#"{ipAddressPools: [bgp], localPref: 120, communities: ["64500:1"]}"#),
        bgp_advertisement("summary", r#"{ipAddressPools: [bgp], aggregationLength: 24, aggregationLengthV6: 64, communities: ["64500:2"]}"#),
        bgp_advertisement("rack-2", r#"{ipAddressPools: [rack-2-only], nodeSelectors: [{matchLabels: {rack: "2"}}]}"#),
        bgp_advertisement("quiet", r#"{ipAddressPools: [quiet], serviceSelectors: [{matchLabels: {loud: "no"}}]}"#),
        peer("ibgp", "{myASN: 64500, peerASN: 64500, peerAddress: 192.168.0.1}"),
        peer("ebgp", "{myASN: 64500, peerASN: 64501, peerAddress: 192.168.0.2}"),
        peer("elsewhere", r#"{myASN: 64500, peerASN: 64501, peerAddress: 192.168.0.3, nodeSelectors: [{matchLabels: {rack: "2"}}]}"#),
    ]
    .concat()
}

fn config() -> Config {
    let parsed = crate::manifest::parse(&manifests(), "test", "metallb-system").unwrap();
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    config::load(&parsed.objects, &LoadOptions::default()).unwrap()
}

fn service(name: &str, ips: &[&str]) -> LbService {
    LbService {
        key: ServiceKey::new("web", name),
        labels: BTreeMap::new(),
        is_load_balancer: true,
        load_balancer_class: None,
        traffic_policy_local: false,
        ingress: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        sharing_key: None,
        health_check_node_port: None,
    }
}

struct World {
    node: NodeView,
    services: Vec<LbService>,
    endpoints: BTreeMap<ServiceKey, ServingEndpoints>,
}

impl World {
    fn new() -> Self {
        World {
            node: NodeView::named("node-a"),
            services: Vec::new(),
            endpoints: BTreeMap::new(),
        }
    }

    /// Adds a Service with serving endpoints on `nodes`.
    fn with(mut self, service: LbService, nodes: &[&str]) -> Self {
        self.endpoints.insert(
            service.key.clone(),
            ServingEndpoints {
                nodes: nodes.iter().map(|n| n.to_string()).collect(),
                ready: nodes.iter().map(|n| n.to_string()).collect(),
                any: !nodes.is_empty(),
            },
        );
        self.services.push(service);
        self
    }

    fn intent(&self) -> NodeIntent {
        intent(
            &config(),
            &IntentInputs {
                node: &self.node,
                services: &self.services,
                endpoints: &self.endpoints,
                scope: &ServiceScope::default(),
                ignore_exclude_label: false,
                held: &BTreeSet::new(),
            },
        )
    }

    fn outcome(&self, name: &str) -> ServiceBgp {
        self.intent().services[&ServiceKey::new("web", name)].clone()
    }
}

fn session<'a>(intent: &'a NodeIntent, peer: &str) -> &'a SessionIntent {
    intent
        .sessions
        .iter()
        .find(|s| s.peer.name == peer)
        .unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn sessions_exist_for_peers_selecting_the_node() {
    let intent = World::new().intent();
    let names: Vec<&str> = intent
        .sessions
        .iter()
        .map(|s| s.peer.name.as_str())
        .collect();
    assert_eq!(names, ["ibgp", "ebgp"]);
}

#[test]
fn services_not_announced_carry_metallb_s_reason() {
    use NotAnnounced::*;
    let mut local = service("local-elsewhere", &["198.51.100.12"]);
    local.traffic_policy_local = true;
    let world = World::new()
        .with(service("pending", &[]), &["node-a"])
        .with(service("foreign", &["10.9.9.9"]), &["node-a"])
        .with(
            service("split", &["198.51.100.10", "192.0.2.10"]),
            &["node-a"],
        )
        .with(service("rack-2", &["203.0.113.10"]), &["node-a"])
        .with(service("quiet", &["192.0.2.10"]), &["node-a"])
        .with(local, &["node-b"])
        .with(service("no-endpoints", &["198.51.100.13"]), &[]);
    let reasons: Vec<(String, ServiceBgp)> = world
        .intent()
        .services
        .into_iter()
        .map(|(k, v)| (k.name, v))
        .collect();
    let expect = |name: &str, reason| (name.to_string(), ServiceBgp::NotAnnounced(reason));
    assert_eq!(
        reasons,
        [
            expect("foreign", IpNotAllowed),
            expect("local-elsewhere", NoLocalEndpoints),
            expect("no-endpoints", NoEndpoints),
            expect("pending", NoIpAllocated),
            expect("quiet", NoMatchingAdvertisement),
            expect("rack-2", NotOwner),
            expect("split", IpNotAllowed),
        ]
    );
}

#[test]
fn unavailable_out_of_service_and_excluded_nodes_announce_nothing() {
    let mut world = World::new().with(service("web", &["198.51.100.10"]), &["node-a"]);
    world.node.network_unavailable = true;
    assert_eq!(
        world.outcome("web"),
        ServiceBgp::NotAnnounced(NotAnnounced::NodeNetworkUnavailable)
    );
    world.node.network_unavailable = false;
    world.node.out_of_service = true;
    assert_eq!(
        world.outcome("web"),
        ServiceBgp::NotAnnounced(NotAnnounced::NodeOutOfService)
    );
    world.node.out_of_service = false;
    world.node.excluded = true;
    assert_eq!(
        world.outcome("web"),
        ServiceBgp::NotAnnounced(NotAnnounced::NodeLabeledExcludeBalancers)
    );
}

#[test]
fn local_pref_goes_to_ibgp_sessions_only() {
    let intent = World::new()
        .with(service("web", &["198.51.100.10"]), &["node-b"])
        .intent();
    let host = net("198.51.100.10/32");
    assert_eq!(
        session(&intent, "ibgp").announcements[&host].local_pref,
        Some(120)
    );
    assert_eq!(
        session(&intent, "ebgp").announcements[&host].local_pref,
        None
    );
}

#[test]
fn aggregated_prefixes_are_announced_once_with_the_union_of_communities() {
    let a = service("a", &["198.51.100.10"]);
    let b = service("b", &["198.51.100.11"]);
    let intent = World::new()
        .with(a, &["node-a"])
        .with(b, &["node-a"])
        .intent();
    let ebgp = session(&intent, "ebgp");
    let prefixes: Vec<String> = ebgp.announcements.keys().map(ToString::to_string).collect();
    assert_eq!(
        prefixes,
        ["198.51.100.0/24", "198.51.100.10/32", "198.51.100.11/32"]
    );
    let summary = &ebgp.announcements[&net("198.51.100.0/24")];
    assert_eq!(
        summary
            .communities
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["64500:2"]
    );
    assert_eq!(
        intent.services[&ServiceKey::new("web", "a")],
        ServiceBgp::Announced {
            prefixes: [net("198.51.100.0/24"), net("198.51.100.10/32")].into(),
            peers: BTreeSet::from(["ebgp".to_string(), "ibgp".to_string()]).into(),
        }
    );
}

#[test]
fn services_announced_to_the_same_peers_share_one_set() {
    let intent = World::new()
        .with(service("a", &["198.51.100.10"]), &["node-a"])
        .with(service("b", &["198.51.100.11"]), &["node-a"])
        .intent();
    let peers = |name: &str| match &intent.services[&ServiceKey::new("web", name)] {
        ServiceBgp::Announced { peers, .. } => std::sync::Arc::clone(peers),
        other => panic!("{name} not announced: {other:?}"),
    };
    assert!(std::sync::Arc::ptr_eq(&peers("a"), &peers("b")));
}

#[test]
fn ipv6_prefixes_skip_ipv4_only_sessions() {
    let intent = World::new()
        .with(service("six", &["2001:db8::10"]), &["node-a"])
        .intent();
    assert!(intent.sessions.iter().all(|s| s.announcements.is_empty()));
    assert_eq!(
        intent.services[&ServiceKey::new("web", "six")],
        ServiceBgp::NotAnnounced(NotAnnounced::NoPeers)
    );
}

proptest::proptest! {
    /// Updating the kept intent one Service at a time gives exactly what computing it from
    /// scratch gives, and reports exactly the prefixes whose receivers changed.
    #[test]
    fn updating_service_by_service_equals_computing_from_scratch(
        rack_2 in proptest::bool::ANY,
        steps in proptest::collection::vec(
            (0u8..6, proptest::option::of((
                proptest::collection::vec(0usize..8, 0..3),
                proptest::bool::ANY,
                proptest::bool::ANY,
                proptest::bool::ANY,
                proptest::collection::btree_set(0u8..2, 0..3),
            ))),
            1..30,
        ),
    ) {
        const IPS: [&str; 8] = [
            "198.51.100.1", "198.51.100.2", "198.51.100.200", "2001:db8::1",
            "2001:db8::2", "203.0.113.1", "192.0.2.1", "10.0.0.1",
        ];
        let config = config();
        let mut node = NodeView::named("node-a");
        if rack_2 {
            node.labels.insert("rack".into(), "2".into());
        }
        let scope = ServiceScope::default();
        let mut services: BTreeMap<ServiceKey, LbService> = BTreeMap::new();
        let mut endpoints: BTreeMap<ServiceKey, ServingEndpoints> = BTreeMap::new();
        let list = |services: &BTreeMap<ServiceKey, LbService>| -> Vec<LbService> {
            services.values().cloned().collect()
        };
        let empty = list(&services);
        let mut state = IntentState::new(&config, &IntentInputs {
            node: &node,
            services: &empty,
            endpoints: &endpoints,
            scope: &scope,
            ignore_exclude_label: false,
            held: &BTreeSet::new(),
        });
        for (n, change) in steps {
            let key = ServiceKey::new("web", &format!("s{n}"));
            match change {
                None => {
                    services.remove(&key);
                    endpoints.remove(&key);
                }
                Some((ips, local, quiet, not_lb, nodes)) => {
                    let ips: Vec<&str> = ips.iter().map(|i| IPS[*i]).collect();
                    let mut s = service(&key.name, &ips);
                    s.traffic_policy_local = local;
                    s.is_load_balancer = !not_lb;
                    if quiet {
                        s.labels.insert("loud".into(), "no".into());
                    }
                    services.insert(key.clone(), s);
                    let names = || nodes.iter().map(|i| ["node-a", "node-b"][usize::from(*i)].to_string());
                    endpoints.insert(key.clone(), ServingEndpoints {
                        nodes: names().collect(),
                        ready: names().collect(),
                        any: !nodes.is_empty(),
                    });
                }
            }
            let all = list(&services);
            let inputs = IntentInputs {
                node: &node,
                services: &all,
                endpoints: &endpoints,
                scope: &scope,
                ignore_exclude_label: false,
                held: &BTreeSet::new(),
            };
            let before = state.intent().receivers();
            let changes = state.update(&config, &inputs, [&key], |k| services.get(k));
            let fresh = intent(&config, &inputs);
            proptest::prop_assert_eq!(state.intent(), &fresh);
            let after = fresh.receivers();
            let none = std::collections::BTreeSet::new();
            let expected: Vec<PrefixChange> = before
                .keys()
                .chain(after.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter_map(|p| {
                    let (b, a) = (before.get(p).unwrap_or(&none), after.get(p).unwrap_or(&none));
                    (b != a).then(|| PrefixChange { prefix: *p, before: b.clone(), after: a.clone() })
                })
                .collect();
            proptest::prop_assert_eq!(changes, expected);
        }
    }
}
