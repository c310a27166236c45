use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::config::{self, Config, LoadOptions};
use crate::views::{ServiceKey, ServiceScope};

mod choice;
mod properties;

fn load(yaml: &str) -> Config {
    let parsed = crate::manifest::parse(yaml, "test", "metallb-system").unwrap();
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    config::load(&parsed.objects, &LoadOptions::default()).unwrap()
}

fn pool(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n"
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A single-stack IPv4 Cluster Service on TCP/80 with no requests.
fn svc(namespace: &str, name: &str) -> AllocService {
    AllocService::ipv4(
        ServiceKey::new(namespace, name),
        vec![Port {
            protocol: "TCP".into(),
            port: 80,
        }],
    )
}

fn scope() -> ServiceScope {
    ServiceScope::default()
}

fn run(config: &Config, services: &[AllocService]) -> BTreeMap<ServiceKey, Decision> {
    allocate_all(config, services, &scope()).1
}

fn ingress_of(decisions: &BTreeMap<ServiceKey, Decision>, name: &str) -> Vec<String> {
    decisions
        .iter()
        .find(|(k, _)| k.name == name)
        .map(|(_, d)| d.ingress.iter().map(IpAddr::to_string).collect())
        .unwrap_or_default()
}

fn pending_of(decisions: &BTreeMap<ServiceKey, Decision>, name: &str) -> String {
    decisions
        .iter()
        .find(|(k, _)| k.name == name)
        .and_then(|(_, d)| d.pending.clone())
        .unwrap_or_default()
}

#[test]
fn addresses_go_lowest_first_and_exhaustion_says_how_full() {
    let config = load(&pool("small", "{addresses: [10.0.0.0/30]}"));
    let services: Vec<_> = (0..5).map(|i| svc("default", &format!("s{i}"))).collect();
    let d = run(&config, &services);
    for (i, want) in ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]
        .iter()
        .enumerate()
    {
        assert_eq!(ingress_of(&d, &format!("s{i}")), [*want]);
        assert_eq!(
            d[&ServiceKey::new("default", &format!("s{i}"))]
                .pool
                .as_deref(),
            Some("small")
        );
    }
    assert_eq!(ingress_of(&d, "s4"), Vec::<String>::new());
    let why = pending_of(&d, "s4");
    assert!(
        why.contains("pool small exhausted (4/4 IPv4 in use)"),
        "{why}"
    );
    let events = &d[&ServiceKey::new("default", "s4")].events;
    assert_eq!(events[0].reason, "AllocationFailed");
    assert!(
        events[0]
            .message
            .starts_with("Failed to allocate IP for \"default/s4\": ")
    );
    let first = &d[&ServiceKey::new("default", "s0")].events[0];
    assert_eq!(
        (first.reason, first.message.as_str()),
        ("IPAllocated", "Assigned IP [\"10.0.0.0\"]")
    );
}

#[test]
fn avoid_buggy_ips_skips_dot_zero_and_dot_255() {
    let config = load(&pool(
        "p",
        "{addresses: [10.0.0.255/32, 10.0.1.0/31], avoidBuggyIPs: true}",
    ));
    let d = run(&config, &[svc("a", "x"), svc("a", "y")]);
    assert_eq!(ingress_of(&d, "x"), ["10.0.1.1"]);
    assert!(pending_of(&d, "y").contains("exhausted (1/1 IPv4 in use)"));
    let mut asked = svc("a", "z");
    asked.requested_ips = Ok(vec![ip("10.0.1.0")]);
    let d = run(&config, &[asked]);
    assert!(
        pending_of(&d, "z").contains("avoidBuggyIPs"),
        "{}",
        pending_of(&d, "z")
    );
}

#[test]
fn ranges_are_scanned_in_entry_order() {
    let config = load(&pool(
        "p",
        "{addresses: [10.0.5.0/31, 10.0.1.10-10.0.1.11]}",
    ));
    let services: Vec<_> = (0..4).map(|i| svc("default", &format!("s{i}"))).collect();
    let d = run(&config, &services);
    let got: Vec<Vec<String>> = (0..4).map(|i| ingress_of(&d, &format!("s{i}"))).collect();
    assert_eq!(
        got,
        [["10.0.5.0"], ["10.0.5.1"], ["10.0.1.10"], ["10.0.1.11"]]
    );
}

#[test]
fn requested_ips_are_honoured_and_checked() {
    let config = load(&format!(
        "{}{}",
        pool("a", "{addresses: [10.0.0.0/24]}"),
        pool("b", "{addresses: [10.0.1.0/24], autoAssign: false}")
    ));
    let mut asked = svc("ns", "asked");
    asked.requested_ips = Ok(vec![ip("10.0.1.7")]);
    let mut outside = svc("ns", "outside");
    outside.requested_ips = Ok(vec![ip("192.0.2.1")]);
    let mut wrong_pool = svc("ns", "wrong-pool");
    wrong_pool.requested_ips = Ok(vec![ip("10.0.0.9")]);
    wrong_pool.requested_pool = Some("b".into());
    let mut v6 = svc("ns", "v6");
    v6.requested_ips = Ok(vec![ip("2001:db8::1")]);
    let d = run(&config, &[asked, outside, wrong_pool, v6]);
    assert_eq!(
        ingress_of(&d, "asked"),
        ["10.0.1.7"],
        "autoAssign does not matter"
    );
    assert_eq!(
        pending_of(&d, "outside"),
        "IP 192.0.2.1 is in no IPAddressPool"
    );
    assert_eq!(
        pending_of(&d, "wrong-pool"),
        "IP 10.0.0.9 is in pool a, but metallb.io/address-pool asks for pool b"
    );
    assert!(
        pending_of(&d, "v6")
            .contains("are IPv6 but the Service's ClusterIPs and ipFamilyPolicy need IPv4"),
        "{}",
        pending_of(&d, "v6")
    );
}

#[test]
fn a_request_that_cannot_be_read_keeps_what_works() {
    let config = load(&pool("a", "{addresses: [10.0.0.0/24]}"));
    let mut s = svc("ns", "web");
    s.ingress = vec![ip("10.0.0.4")];
    s.requested_ips = Err("both are set".into());
    let d = run(&config, &[s]);
    let web = &d[&ServiceKey::new("ns", "web")];
    assert_eq!(ingress_of(&d, "web"), ["10.0.0.4"]);
    assert_eq!(web.events[0].reason, "LoadBalancerFailed");
    assert_eq!(web.pending.as_deref(), Some("both are set"));
}

#[test]
fn the_pool_annotation_picks_the_pool_even_without_auto_assign() {
    let config = load(&format!(
        "{}{}",
        pool("a", "{addresses: [10.0.0.0/24]}"),
        pool("manual", "{addresses: [10.0.9.0/24], autoAssign: false}")
    ));
    let mut chosen = svc("ns", "chosen");
    chosen.requested_pool = Some("manual".into());
    let mut missing = svc("ns", "missing");
    missing.requested_pool = Some("nope".into());
    let d = run(&config, &[chosen, missing, svc("ns", "plain")]);
    assert_eq!(ingress_of(&d, "chosen"), ["10.0.9.0"]);
    assert_eq!(ingress_of(&d, "plain"), ["10.0.0.0"]);
    assert_eq!(
        pending_of(&d, "missing"),
        "pool nope (metallb.io/address-pool) does not exist"
    );
}

#[test]
fn auto_assign_false_pools_are_never_used_automatically() {
    let config = load(&pool(
        "manual",
        "{addresses: [10.0.9.0/24], autoAssign: false}",
    ));
    let d = run(&config, &[svc("ns", "x")]);
    let why = pending_of(&d, "x");
    assert!(why.contains("pool manual has autoAssign: false"), "{why}");
}

#[test]
fn service_allocation_pins_by_priority_and_restricts_namespaces() {
    let config = load(&format!(
        "{}{}{}{}",
        pool("open", "{addresses: [10.0.0.0/24]}"),
        pool(
            "team-low",
            "{addresses: [10.1.0.0/24], serviceAllocation: {priority: 20, namespaces: [team]}}"
        ),
        pool(
            "team-high",
            "{addresses: [10.2.0.0/24], serviceAllocation: {priority: 10, namespaces: [team]}}"
        ),
        pool(
            "labelled",
            "{addresses: [10.3.0.0/24], serviceAllocation: {serviceSelectors: [{matchLabels: {tier: gold}}]}}"
        ),
    ));
    let mut gold = svc("other", "gold");
    gold.labels.insert("tier".into(), "gold".into());
    let mut team_in_other_pool = svc("other", "asks");
    team_in_other_pool.requested_pool = Some("team-high".into());
    let d = run(
        &config,
        &[
            svc("team", "t"),
            svc("other", "o"),
            gold,
            team_in_other_pool,
        ],
    );
    assert_eq!(
        ingress_of(&d, "t"),
        ["10.2.0.0"],
        "priority 10 before 20 and before open pools"
    );
    assert_eq!(ingress_of(&d, "o"), ["10.0.0.0"]);
    assert_eq!(ingress_of(&d, "gold"), ["10.3.0.0"]);
    assert_eq!(
        pending_of(&d, "asks"),
        "pool team-high serves only namespaces team (serviceAllocation), not other"
    );
}

#[test]
fn priority_zero_is_tried_last_among_pinned_pools() {
    let config = load(&format!(
        "{}{}",
        pool(
            "zero",
            "{addresses: [10.1.0.0/24], serviceAllocation: {namespaces: [team]}}"
        ),
        pool(
            "five",
            "{addresses: [10.2.0.0/24], serviceAllocation: {priority: 5, namespaces: [team]}}"
        ),
    ));
    let d = run(&config, &[svc("team", "t")]);
    assert_eq!(ingress_of(&d, "t"), ["10.2.0.0"]);
}

fn sharing(name: &str, key: &str, port: i32) -> AllocService {
    let mut s = svc("ns", name);
    s.sharing_key = Some(key.into());
    s.ports = vec![Port {
        protocol: "TCP".into(),
        port,
    }];
    s
}

#[test]
fn sharing_needs_the_key_the_backend_and_free_ports() {
    let config = load(&pool("p", "{addresses: [10.0.0.0/24]}"));
    let a = sharing("a", "k", 80);
    let b = sharing("b", "k", 443);
    let c = sharing("c", "k", 80);
    let mut d_udp = sharing("d", "k", 80);
    d_udp.ports[0].protocol = "UDP".into();
    let other = sharing("e", "other", 22);
    let mut local = sharing("f", "k", 8080);
    local.backend_key = "app=f".into();
    let d = run(&config, &[a, b, c, d_udp, other, local]);
    assert_eq!(ingress_of(&d, "a"), ["10.0.0.0"]);
    assert_eq!(ingress_of(&d, "b"), ["10.0.0.0"], "same key, other port");
    assert_eq!(ingress_of(&d, "c"), ["10.0.0.1"], "TCP/80 is taken on .0");
    assert_eq!(
        ingress_of(&d, "d"),
        ["10.0.0.0"],
        "UDP/80 and TCP/80 may share"
    );
    assert_eq!(ingress_of(&d, "e"), ["10.0.0.2"]);
    assert_eq!(
        ingress_of(&d, "f"),
        ["10.0.0.3"],
        "Local cannot join Cluster"
    );
}

#[test]
fn a_requested_shared_ip_says_who_holds_it() {
    let config = load(&pool("p", "{addresses: [10.0.0.0/24]}"));
    let mut web = sharing("web", "k1", 80);
    web.ingress = vec![ip("10.0.0.5")];
    let mut api = sharing("api", "k2", 443);
    api.requested_ips = Ok(vec![ip("10.0.0.5")]);
    let mut plain = svc("ns", "plain");
    plain.requested_ips = Ok(vec![ip("10.0.0.5")]);
    let d = run(&config, &[web, api, plain]);
    assert_eq!(
        pending_of(&d, "api"),
        "IP 10.0.0.5 is used by ns/web with a different sharing key (\"k1\", this Service has \"k2\")"
    );
    assert_eq!(
        pending_of(&d, "plain"),
        "IP 10.0.0.5 is used by ns/web, and this Service has no metallb.io/allow-shared-ip key"
    );
}

#[test]
fn local_services_share_only_with_the_same_selector() {
    let config = load(&pool("p", "{addresses: [10.0.0.0/24]}"));
    let mut a = sharing("a", "k", 80);
    a.backend_key = "app=x".into();
    let mut b = sharing("b", "k", 81);
    b.backend_key = "app=x".into();
    let mut c = sharing("c", "k", 82);
    c.backend_key = "app=y".into();
    let d = run(&config, &[a, b, c]);
    assert_eq!(ingress_of(&d, "b"), ingress_of(&d, "a"));
    assert_ne!(ingress_of(&d, "c"), ingress_of(&d, "a"));
}

fn dual(name: &str, policy: FamilyPolicy, families: &[Family]) -> AllocService {
    let mut s = svc("ns", name);
    s.policy = policy;
    s.cluster_families = families.to_vec();
    s
}

#[test]
fn dual_stack_takes_both_families_from_one_pool() {
    let config = load(&format!(
        "{}{}",
        pool("v4", "{addresses: [10.0.0.0/24]}"),
        pool("both", "{addresses: [10.9.0.0/24, \"2001:db8::/120\"]}"),
    ));
    use Family::*;
    let d = run(
        &config,
        &[
            dual("require", FamilyPolicy::RequireDualStack, &[V4, V6]),
            dual("v6-first", FamilyPolicy::PreferDualStack, &[V6, V4]),
            dual("single", FamilyPolicy::SingleStack, &[V6]),
            dual("one-cluster-ip", FamilyPolicy::RequireDualStack, &[V4]),
        ],
    );
    assert_eq!(ingress_of(&d, "require"), ["10.9.0.0", "2001:db8::"]);
    assert_eq!(ingress_of(&d, "single"), ["2001:db8::1"]);
    assert_eq!(ingress_of(&d, "v6-first"), ["2001:db8::2", "10.9.0.1"]);
    assert!(pending_of(&d, "one-cluster-ip").contains("RequireDualStack"));
    let events = &d[&ServiceKey::new("ns", "one-cluster-ip")].events;
    assert_eq!(events[0].reason, "not enough clusterips");
}

#[test]
fn prefer_dual_stack_falls_back_to_one_family_and_later_gets_the_other() {
    use Family::*;
    let v4_only = load(&pool("p", "{addresses: [10.0.0.0/24]}"));
    let s = dual("web", FamilyPolicy::PreferDualStack, &[V4, V6]);
    let d = run(&v4_only, std::slice::from_ref(&s));
    assert_eq!(ingress_of(&d, "web"), ["10.0.0.0"]);
    let required = dual("strict", FamilyPolicy::RequireDualStack, &[V4, V6]);
    let d2 = run(&v4_only, &[required]);
    assert!(pending_of(&d2, "strict").contains("pool p has no IPv6 addresses"));
    // The pool gains IPv6: the Service keeps its IPv4 and gets an IPv6 from the same pool.
    let grown = load(&pool("p", "{addresses: [10.0.0.0/24, \"2001:db8::/120\"]}"));
    let mut held = s.clone();
    held.ingress = vec![ip("10.0.0.0")];
    let d = run(&grown, &[held]);
    assert_eq!(ingress_of(&d, "web"), ["10.0.0.0", "2001:db8::"]);
    let e = &d[&ServiceKey::new("ns", "web")].events[0];
    assert_eq!(
        (e.reason, e.message.as_str()),
        ("IPAllocated", "Assigned additional IP [\"2001:db8::\"]")
    );
}

#[test]
fn held_ips_survive_a_restart_and_others_fill_the_gaps() {
    let config = load(&pool("p", "{addresses: [10.0.0.0/29]}"));
    let mut z = svc("ns", "z");
    z.ingress = vec![ip("10.0.0.0")];
    let mut y = svc("ns", "y");
    y.ingress = vec![ip("10.0.0.2")];
    let d = run(&config, &[svc("ns", "a"), z, y, svc("ns", "b")]);
    assert_eq!(ingress_of(&d, "z"), ["10.0.0.0"]);
    assert_eq!(ingress_of(&d, "y"), ["10.0.0.2"]);
    assert_eq!(ingress_of(&d, "a"), ["10.0.0.1"]);
    assert_eq!(ingress_of(&d, "b"), ["10.0.0.3"]);
    assert!(d[&ServiceKey::new("ns", "z")].events.is_empty());
}

#[test]
fn a_shrunk_pool_clears_and_reallocates_and_a_removed_pool_leaves_pending() {
    let config = load(&pool("p", "{addresses: [10.0.0.0/30]}"));
    let mut moved = svc("ns", "moved");
    moved.ingress = vec![ip("10.0.0.200")];
    let d = run(&config, &[moved.clone()]);
    assert_eq!(ingress_of(&d, "moved"), ["10.0.0.0"]);
    let reasons: Vec<&str> = d[&ServiceKey::new("ns", "moved")]
        .events
        .iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons, ["ClearAssignment", "IPAllocated"]);
    let none = load("");
    let d = run(&none, &[moved]);
    assert_eq!(ingress_of(&d, "moved"), Vec::<String>::new());
    assert_eq!(pending_of(&d, "moved"), "no IPAddressPool exists");
}

#[test]
fn changed_requests_or_pool_annotations_move_the_service() {
    let config = load(&format!(
        "{}{}",
        pool("a", "{addresses: [10.0.0.0/24]}"),
        pool("b", "{addresses: [10.0.1.0/24]}")
    ));
    let mut moved = svc("ns", "moved");
    moved.ingress = vec![ip("10.0.0.0")];
    moved.requested_pool = Some("b".into());
    let mut asked = svc("ns", "asked");
    asked.ingress = vec![ip("10.0.0.1")];
    asked.requested_ips = Ok(vec![ip("10.0.0.50")]);
    let d = run(&config, &[moved, asked]);
    assert_eq!(ingress_of(&d, "moved"), ["10.0.1.0"]);
    assert_eq!(ingress_of(&d, "asked"), ["10.0.0.50"]);
}

#[test]
fn other_classes_and_other_types_are_left_alone_or_cleared() {
    let config = load(&pool("p", "{addresses: [10.0.0.0/24]}"));
    let mut foreign = svc("ns", "foreign");
    foreign.load_balancer_class = Some("other.io/lb".into());
    foreign.ingress = vec![ip("192.0.2.1")];
    let mut node_port = svc("ns", "np");
    node_port.is_load_balancer = false;
    node_port.ingress = vec![ip("10.0.0.0")];
    let d = run(&config, &[foreign, node_port, svc("ns", "new")]);
    assert_eq!(ingress_of(&d, "foreign"), ["192.0.2.1"]);
    assert_eq!(ingress_of(&d, "np"), Vec::<String>::new());
    assert_eq!(
        ingress_of(&d, "new"),
        ["10.0.0.0"],
        "the cleared IP is free again"
    );
    let with_class = ServiceScope {
        load_balancer_class: Some("other.io/lb".into()),
    };
    let mut mine = svc("ns", "mine");
    mine.load_balancer_class = Some("other.io/lb".into());
    let (_, d) = allocate_all(&config, &[mine, svc("ns", "unclassed")], &with_class);
    assert_eq!(ingress_of(&d, "mine"), ["10.0.0.0"]);
    assert_eq!(ingress_of(&d, "unclassed"), Vec::<String>::new());
}

#[test]
fn a_release_frees_the_ip_for_the_next_service() {
    let config = load(&pool("p", "{addresses: [10.0.0.0/32]}"));
    let (mut allocator, d) = allocate_all(&config, &[svc("ns", "a"), svc("ns", "b")], &scope());
    assert!(pending_of(&d, "b").contains("exhausted"));
    assert!(allocator.release(&ServiceKey::new("ns", "a")));
    let again = allocator.converge(&svc("ns", "b"), &scope());
    assert_eq!(again.ingress, [ip("10.0.0.0")]);
    let usage = allocator.usage()["p"];
    assert_eq!((usage.assigned_ipv4, usage.available_ipv4), (1, 0));
}

#[test]
fn services_are_read_from_kubernetes_objects() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations:
    metallb.universe.tf/loadBalancerIPs: "10.0.0.5, 2001:db8::5"
    metallb.io/address-pool: gold
    metallb.io/allow-shared-ip: key1
spec:
  type: LoadBalancer
  clusterIPs: ["10.96.0.10", "fd00::10"]
  ipFamilyPolicy: RequireDualStack
  externalTrafficPolicy: Local
  selector: {app: web, tier: front}
  ports: [{port: 80}, {port: 53, protocol: UDP}]
status:
  loadBalancer:
    ingress: [{ip: 10.0.0.5}, {hostname: example.org}]
"#;
    let parsed = crate::manifest::parse(yaml, "t", "metallb-system").unwrap();
    let s = AllocService::from_service(&parsed.objects.services[0]);
    assert_eq!(s.cluster_families, [Family::V4, Family::V6]);
    assert_eq!(s.policy, FamilyPolicy::RequireDualStack);
    assert_eq!(s.requested_ips, Ok(vec![ip("10.0.0.5"), ip("2001:db8::5")]));
    assert_eq!(s.requested_pool.as_deref(), Some("gold"));
    assert_eq!(s.sharing_key.as_deref(), Some("key1"));
    assert_eq!(s.backend_key, "app=web,tier=front");
    assert_eq!(s.ports[1].to_string(), "UDP/53");
    assert_eq!(s.ingress, [ip("10.0.0.5")]);
    assert_eq!(
        s.deprecated_annotations,
        ["metallb.universe.tf/loadBalancerIPs"]
    );
    assert_eq!(s.wanted_families(), [Family::V4, Family::V6]);
}

#[test]
fn unreadable_requests_name_the_field() {
    let read = |annotations: &str, spec_ip: &str| {
        let yaml = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: shop, annotations: {{{annotations}}}}}\nspec: {{type: LoadBalancer, clusterIP: 10.96.0.1{spec_ip}}}\n"
        );
        let parsed = crate::manifest::parse(&yaml, "t", "metallb-system").unwrap();
        assert!(parsed.errors.is_empty(), "{yaml}: {:?}", parsed.errors);
        AllocService::from_service(&parsed.objects.services[0]).requested_ips
    };
    assert_eq!(
        read("metallb.io/loadBalancerIPs: 'x'", ""),
        Err("metallb.io/loadBalancerIPs: \"x\" is not an IP address".into())
    );
    assert_eq!(
        read("metallb.io/loadBalancerIPs: '10.0.0.1,10.0.0.2'", ""),
        Err("metallb.io/loadBalancerIPs: 10.0.0.1 and 10.0.0.2 are both IPv4; give at most one IP per family".into())
    );
    assert!(
        read(
            "metallb.io/loadBalancerIPs: '10.0.0.1'",
            ", loadBalancerIP: 10.0.0.2"
        )
        .unwrap_err()
        .contains("both spec.loadBalancerIP")
    );
    assert_eq!(
        read("", ", loadBalancerIP: 10.0.0.2"),
        Ok(vec![ip("10.0.0.2")])
    );
}
