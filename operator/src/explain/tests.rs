use super::*;

/// Two namespaces, pools of every kind of choice, an edge BGPAdvertisement and a layer-2
/// one, a peer everywhere and one on rack r1, four nodes (n2 excluded, n4 not Ready) and
/// Services in each situation.
fn input() -> String {
    use crate::fixtures::{
        bgp_advertisement, l2_advertisement, lb_service, namespace, node, peer, pool, service,
    };
    let ready_false = r#"status: {conditions: [{type: Ready, status: "False"}]}"#;
    let edge = "[{matchExpressions: [{key: role, operator: In, values: [edge]}]}]";
    [
        namespace("shop"),
        namespace("other"),
        pool("bgp", "{addresses: [198.51.100.0/24], serviceAllocation: {priority: 1, namespaces: [shop]}}"),
        pool("spare", "{addresses: [198.51.101.0/24]}"),
        pool("manual", "{addresses: [203.0.113.0/24], autoAssign: false}"),
        pool("v6", r#"{addresses: ["2001:db8::/64"]}"#),
        pool("l2", "{addresses: [192.0.2.0/29], autoAssign: false}"),
        l2_advertisement("l2", "{ipAddressPools: [l2], nodeSelectors: [{matchLabels: {zone: a}}]}"),
        bgp_advertisement(
            "edge",
            &format!(r#"{{ipAddressPools: [bgp, spare], communities: ["64500:1"], nodeSelectors: {edge}}}"#),
        ),
        peer("tor", "{myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.1}"),
        peer("rack1", "{myASN: 64512, peerASN: 64514, peerAddress: 10.0.0.2, nodeSelectors: [{matchLabels: {rack: r1}}]}"),
        node("n1", ", zone: a, role: edge, rack: r1", ""),
        node("n2", r#", zone: a, role: edge, node.kubernetes.io/exclude-from-external-load-balancers: """#, ""),
        node("n3", ", zone: b", ""),
        node("n4", ", zone: a, role: edge", ready_false),
        lb_service("shop", "web", "", "externalTrafficPolicy: Local, clusterIP: 10.96.0.10, ports: [{port: 80}]"),
        lb_service("shop", "printer", ", annotations: {metallb.io/address-pool: l2}", "clusterIP: 10.96.0.11, ports: [{port: 631}]"),
        lb_service("other", "app", "", "clusterIP: 10.96.0.12, ports: [{port: 80}]"),
        lb_service("shop", "lost", ", annotations: {metallb.io/address-pool: nope}", "clusterIP: 10.96.0.13, ports: [{port: 80}]"),
        service("shop", "plain", "", "spec: {type: ClusterIP, clusterIP: 10.96.0.14, ports: [{port: 80}]}"),
    ]
    .concat()
}

fn slice(namespace: &str, service: &str, node: &str) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, namespace: {namespace}, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [10.244.0.5], nodeName: {node}, conditions: {{ready: true}}}}]\n"
    )
}

fn run(service: &str) -> Result<Explanation, ExplainError> {
    let text = format!(
        "{}{}{}{}",
        input(),
        slice("shop", "web", "n1"),
        slice("shop", "printer", "n1"),
        slice("other", "app", "n1")
    );
    let (objects, config) = crate::dry_run::fixture(&text);
    let (namespace, name) = service.split_once('/').unwrap();
    explain(
        &config,
        &objects,
        &crate::views::serving_endpoints(&objects.endpoint_slices),
        &ServiceKey::new(namespace, name),
        &ServiceScope::default(),
    )
}

fn node<'a>(e: &'a Explanation, name: &str) -> &'a NodeVerdict {
    e.nodes.iter().find(|n| n.node == name).unwrap()
}

fn pool<'a>(e: &'a Explanation, name: &str) -> &'a str {
    e.pools
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| p.reason.as_deref())
        .unwrap_or("chosen")
}

#[test]
fn bgp_reasons_per_node_and_pool_choice() {
    let e = run("shop/web").unwrap();
    assert_eq!(e.pool.as_deref(), Some("bgp"));
    assert!(e.how.starts_with("automatic"), "{}", e.how);
    assert_eq!(pool(&e, "spare"), "pool bgp comes first");
    assert_eq!(
        pool(&e, "manual"),
        "autoAssign: false (used only when asked for by name or IP)"
    );
    assert_eq!(pool(&e, "v6"), "it has no IPv4 addresses");

    let n1 = node(&e, "n1");
    assert!(n1.bgp.announced);
    let peers: Vec<&str> = n1.bgp.peers.iter().map(|p| p.peer.as_str()).collect();
    assert_eq!(peers, ["tor", "rack1"]);
    assert_eq!(n1.bgp.peers[0].communities, ["64500:1"]);
    assert_eq!(n1.bgp.peers[0].prefixes, [format!("{}/32", e.ips[0])]);
    assert_eq!(
        node(&e, "n2").bgp.reason.as_deref(),
        Some("nodeLabeledExcludeBalancers")
    );
    assert_eq!(node(&e, "n3").bgp.reason.as_deref(), Some("notOwner"));
    assert_eq!(
        node(&e, "n4").bgp.reason.as_deref(),
        Some("noLocalEndpoints")
    );
    assert_eq!(node(&e, "n2").bgp.peers_not_on_node, ["rack1"]);
    assert!(n1.bgp.peers_not_on_node.is_empty());
    assert_eq!(
        node(&e, "n1").l2.detail.as_deref(),
        Some("no L2Advertisement names its pool")
    );
    let text = e.text();
    assert!(text.contains("BGP: not announced: externalTrafficPolicy is Local and the node has no ready endpoint (noLocalEndpoints)"), "{text}");
    assert!(
        text.contains("peers not on this node (nodeSelectors): rack1"),
        "{text}"
    );
}

#[test]
fn layer2_owner_and_why_the_others_do_not_answer() {
    let e = run("shop/printer").unwrap();
    assert_eq!(e.pool.as_deref(), Some("l2"));
    assert!(e.how.contains("metallb.io/address-pool: l2"), "{}", e.how);
    assert_eq!(pool(&e, "bgp"), "the Service asks for pool l2");
    assert!(node(&e, "n1").l2.answers);
    let reason = |n: &str| node(&e, n).l2.reason.clone();
    assert_eq!(
        reason("n2"),
        Some(l2::NotAnswered::NodeLabeledExcludeBalancers)
    );
    assert_eq!(reason("n3"), Some(l2::NotAnswered::NodeNotSelected));
    assert_eq!(reason("n4"), Some(l2::NotAnswered::NodeNotAlive));
    assert_eq!(
        node(&e, "n1").bgp.detail.as_deref(),
        Some("its pool has no BGPAdvertisement")
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(
        json["nodes"][2]["l2"]["reason"]["reason"],
        "nodeNotSelected"
    );
    let text = e.text();
    assert!(
        text.contains("L2:  answers ARP/NDP (elected) on every suitable interface"),
        "{text}"
    );
}

#[test]
fn not_elected_names_the_owner() {
    // Without the exclusion label and with n4 Ready, n1, n2 and n4 are candidates.
    let text = format!(
        "{}{}",
        input()
            .replace(
                ", node.kubernetes.io/exclude-from-external-load-balancers: \"\"",
                ""
            )
            .replace(
                "status: {conditions: [{type: Ready, status: \"False\"}]}",
                ""
            ),
        slice("shop", "printer", "n1")
    );
    let (objects, config) = crate::dry_run::fixture(&text);
    let e = explain(
        &config,
        &objects,
        &crate::views::serving_endpoints(&objects.endpoint_slices),
        &ServiceKey::new("shop", "printer"),
        &ServiceScope::default(),
    )
    .unwrap();
    let owners: Vec<&str> = e
        .nodes
        .iter()
        .filter(|n| n.l2.answers)
        .map(|n| n.node.as_str())
        .collect();
    assert_eq!(owners.len(), 1);
    for n in e.nodes.iter().filter(|n| !n.l2.answers && n.node != "n3") {
        assert_eq!(
            n.l2.reason,
            Some(l2::NotAnswered::NotElected {
                owner: owners[0].to_string()
            })
        );
    }
}

#[test]
fn pending_and_refused_pools_are_explained() {
    let e = run("other/app").unwrap();
    assert_eq!(e.pool.as_deref(), Some("spare"));
    assert_eq!(
        pool(&e, "bgp"),
        "pool bgp serves only namespaces shop (serviceAllocation), not other"
    );

    let e = run("shop/lost").unwrap();
    assert!(e.ips.is_empty());
    assert_eq!(
        e.pending.as_deref(),
        Some("pool nope (metallb.io/address-pool) does not exist")
    );
    assert!(e.text().contains("IPs:     none (<pending>): pool nope"));
    assert_eq!(node(&e, "n1").bgp.reason.as_deref(), Some("noIpAllocated"));
    assert_eq!(
        node(&e, "n1").l2.reason,
        Some(l2::NotAnswered::NoIpAllocated)
    );

    assert_eq!(
        run("shop/plain").unwrap_err(),
        ExplainError::NotLoadBalancer(ServiceKey::new("shop", "plain"))
    );
    assert_eq!(
        run("shop/ghost").unwrap_err(),
        ExplainError::NotFound(ServiceKey::new("shop", "ghost"))
    );
}
