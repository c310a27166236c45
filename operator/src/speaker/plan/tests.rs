use super::*;
use crate::manifest;

/// A pool announced over BGP to one peer, and Service shop/a holding an IP with its endpoint on node-a.
fn manifests() -> String {
    use crate::fixtures::{bgp_advertisement, object, peer, pool, service};
    [
        pool("web", "{addresses: [198.51.100.0/24]}"),
        bgp_advertisement("all", "{ipAddressPools: [web]}"),
        peer(
            "tor1",
            "{myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.1}",
        ),
        service(
            "shop",
            "a",
            "",
            r#"spec: {type: LoadBalancer, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 198.51.100.7}]}}"#,
        ),
        object(
            "EndpointSlice",
            "{name: a-1, namespace: shop, labels: {kubernetes.io/service-name: a}}",
            r#"addressType: IPv4
endpoints: [{addresses: [10.244.0.5], nodeName: node-a}]"#,
        ),
    ]
    .concat()
}

fn objects(text: &str) -> ClusterObjects {
    manifest::parse(text, "test", "metallb-system")
        .unwrap()
        .objects
}

fn inputs<'a>(scope: &'a ServiceScope, load: &'a LoadOptions) -> PassInputs<'a> {
    static ALONE: std::sync::LazyLock<Liveness> = std::sync::LazyLock::new(|| Liveness {
        alive: BTreeSet::from(["node-a".to_string()]),
        settled: true,
        isolated: false,
        rejoined: 0,
    });
    PassInputs {
        node: "node-a",
        scope,
        load,
        facts: NodeFacts::default(),
        ignore_exclude_label: false,
        liveness: &ALONE,
        frr_log_level: "informational",
    }
}

#[test]
fn layer2_ips_are_claimed_only_once_gossip_has_settled_and_by_the_elected_node() {
    let config = manifests().replace("kind: BGPAdvertisement", "kind: L2Advertisement");
    let (scope, load) = (ServiceScope::default(), LoadOptions::default());
    let mut planner = Planner::default();
    let pass = planner.pass(&objects(&config), &inputs(&scope, &load));
    assert_eq!(pass.l2.len(), 1);
    assert_eq!(pass.l2[0].service, ServiceKey::new("shop", "a"));
    assert!(planner.statuses().is_empty(), "no BGP advertisement");

    let unsettled = Liveness {
        alive: BTreeSet::from(["node-a".to_string()]),
        settled: false,
        isolated: false,
        rejoined: 0,
    };
    let pass = planner.pass(
        &objects(&config),
        &PassInputs {
            liveness: &unsettled,
            ..inputs(&scope, &load)
        },
    );
    assert!(pass.l2.is_empty());
    // Cut off from the other speakers and the API server: nothing is answered either.
    let isolated = Liveness {
        isolated: true,
        ..inputs(&scope, &load).liveness.clone()
    };
    let pass = planner.pass(
        &objects(&config),
        &PassInputs {
            liveness: &isolated,
            ..inputs(&scope, &load)
        },
    );
    assert!(pass.l2.is_empty());

    // With node-b alive too, exactly one of the two claims the IP.
    let both = Liveness {
        alive: BTreeSet::from(["node-a".to_string(), "node-b".to_string()]),
        settled: true,
        isolated: false,
        rejoined: 0,
    };
    let with_b = format!(
        "{config}---\napiVersion: v1\nkind: Node\nmetadata: {{name: node-b}}\n---\napiVersion: v1\nkind: Node\nmetadata: {{name: node-a}}\n"
    );
    let claims: usize = ["node-a", "node-b"]
        .iter()
        .map(|node| {
            Planner::default()
                .pass(
                    &objects(&with_b),
                    &PassInputs {
                        node,
                        liveness: &both,
                        ..inputs(&scope, &load)
                    },
                )
                .l2
                .len()
        })
        .sum();
    assert_eq!(claims, 1);
}

/// Service `a`'s IP announced to `tor1`.
fn announced_to_tor1() -> Announcement {
    Announcement {
        prefix: "198.51.100.7/32".parse().unwrap(),
        to: vec!["tor1".into()],
        from: vec![],
    }
}

#[test]
fn a_pass_announces_and_reports_what_changed() {
    let (scope, load) = (ServiceScope::default(), LoadOptions::default());
    let mut planner = Planner::default();
    let pass = planner.pass(&objects(&manifests()), &inputs(&scope, &load));
    assert!(pass.model.is_some() && pass.load.is_ok() && !pass.stale);
    assert_eq!(pass.changes, [announced_to_tor1()]);
    assert_eq!(
        planner.statuses()[&ServiceKey::new("shop", "a")],
        BTreeSet::from(["tor1".to_string()]).into()
    );
    let again = planner.pass(&objects(&manifests()), &inputs(&scope, &load));
    assert!(again.changes.is_empty());
}

#[test]
fn a_pass_that_changes_nothing_announced_reuses_the_model_and_the_statuses() {
    let (scope, load) = (ServiceScope::default(), LoadOptions::default());
    let mut planner = Planner::default();
    let first = planner.pass(&objects(&manifests()), &inputs(&scope, &load));
    let first_statuses = planner.statuses();
    let waiting = "---\napiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: shop}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n";
    let with_b = format!("{}{waiting}", manifests());
    let idle = planner.pass(&objects(&with_b), &inputs(&scope, &load));
    let (Some(before), Some(after)) = (&first.model, &idle.model) else {
        panic!("no model");
    };
    assert!(
        Arc::ptr_eq(before, after),
        "a Service without an IP builds nothing"
    );
    assert!(Arc::ptr_eq(&first_statuses, &planner.statuses()));

    let assigned = format!(
        "{with_b}status: {{loadBalancer: {{ingress: [{{ip: 198.51.100.8}}]}}}}\n{}",
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: b-1, namespace: shop, labels: {kubernetes.io/service-name: b}}\naddressType: IPv4\nendpoints: [{addresses: [10.244.0.6], nodeName: node-a}]\n"
    );
    let busy = planner.pass(&objects(&assigned), &inputs(&scope, &load));
    let fresh = Planner::default().pass(&objects(&assigned), &inputs(&scope, &load));
    assert_eq!(busy.model, fresh.model);
    assert_ne!(busy.model, idle.model);
    assert_eq!(planner.statuses().len(), 2);

    // What the model prints besides the intent is built anew when it changes.
    let quiet = planner.pass(
        &objects(&assigned),
        &PassInputs {
            frr_log_level: "warnings",
            ..inputs(&scope, &load)
        },
    );
    assert_eq!(
        quiet.model.as_ref().map(|m| m.log_level.as_str()),
        Some("warnings")
    );
}

proptest::proptest! {
    /// The one-walk diff equals the definition: per prefix of either map, the peers
    /// gained and the peers lost, prefixes with neither left out.
    #[test]
    fn announcement_changes_are_the_per_prefix_differences(
        before in proptest::collection::btree_map(0u8..40, proptest::collection::btree_set(0u8..3, 0..3), 0..30),
        after in proptest::collection::btree_map(0u8..40, proptest::collection::btree_set(0u8..3, 0..3), 0..30),
    ) {
        let map = |m: &BTreeMap<u8, BTreeSet<u8>>| -> BTreeMap<IpNet, BTreeSet<String>> {
            m.iter()
                .map(|(p, s)| (format!("10.0.0.{p}/32").parse().unwrap(), s.iter().map(|n| format!("peer{n}")).collect()))
                .collect()
        };
        let (before, after) = (map(&before), map(&after));
        let empty = BTreeSet::new();
        let prefixes: BTreeSet<&IpNet> = before.keys().chain(after.keys()).collect();
        let expected: Vec<Announcement> = prefixes
            .into_iter()
            .filter_map(|prefix| {
                let was = before.get(prefix).unwrap_or(&empty);
                let is = after.get(prefix).unwrap_or(&empty);
                let to: Vec<String> = is.difference(was).cloned().collect();
                let from: Vec<String> = was.difference(is).cloned().collect();
                (!to.is_empty() || !from.is_empty()).then_some(Announcement { prefix: *prefix, to, from })
            })
            .collect();
        proptest::prop_assert_eq!(announcement_changes(&before, &after), expected);
    }
}

#[test]
fn an_invalid_configuration_keeps_the_last_valid_one() {
    let (scope, load) = (ServiceScope::default(), LoadOptions::default());
    let mut planner = Planner::default();
    let broken = manifests().replace("198.51.100.0/24", "198.51.100.0/99");
    let first = planner.pass(&objects(&broken), &inputs(&scope, &load));
    assert!(first.model.is_none() && first.load.is_err() && !first.stale);
    let good = planner.pass(&objects(&manifests()), &inputs(&scope, &load));
    let bad = planner.pass(&objects(&broken), &inputs(&scope, &load));
    assert!(bad.stale && bad.load.is_err());
    assert_eq!(bad.model, good.model);
    assert!(bad.changes.is_empty());
    let state = configuration_state(&bad.load, None, None, &Time(Default::default()));
    assert_eq!(state.result, Some(ConfigurationStateResult::Invalid));
    assert!(
        state
            .error_summary
            .unwrap()
            .contains("IPAddressPool/metallb-system/web")
    );
}

/// A speaker restarted while the cluster's configuration is invalid starts from the last
/// valid one it ran: it announces with it (the moved endpoint too), and the first valid load
/// replaces it.
#[test]
fn an_adopted_configuration_stands_until_the_clusters_loads() {
    let (scope, load) = (ServiceScope::default(), LoadOptions::default());
    let saved = crate::config::load(&objects(&manifests()), &load).unwrap();
    let broken = manifests().replace("198.51.100.0/24", "198.51.100.0/99");
    let mut planner = Planner::default();
    assert!(planner.adopt(saved.clone()));
    let first = planner.pass(&objects(&broken), &inputs(&scope, &load));
    assert!(first.load.is_err() && first.stale, "{:?}", first.load);
    let model = first.model.expect("a model from the adopted configuration");
    assert!(
        format!("{model:?}").contains("198.51.100.7"),
        "the Service's IP is announced: {model:?}"
    );
    assert_eq!(planner.loads(), 0);
    // A configuration that loads replaces it, and counts as a load to keep.
    let other = manifests().replace("peerASN: 64513", "peerASN: 64514");
    let good = planner.pass(&objects(&other), &inputs(&scope, &load));
    assert!(good.load.is_ok() && !good.stale);
    assert_eq!(planner.loads(), 1);
    assert!(format!("{:?}", good.model).contains("64514"));
    // Adopting once a configuration loaded changes nothing.
    assert!(!planner.adopt(saved));
}

#[test]
fn a_failed_apply_makes_the_state_invalid() {
    let state = configuration_state(
        &Ok(()),
        Some(&Err("vtysh failed".into())),
        None,
        &Time(Default::default()),
    );
    assert_eq!(state.result, Some(ConfigurationStateResult::Invalid));
    assert_eq!(state.error_summary.as_deref(), Some("vtysh failed"));
}

/// [`manifests`] with Service `a` `externalTrafficPolicy: Local`, its endpoint on `node`.
fn local_on(node: &str) -> String {
    manifests()
        .replace(
            "spec: {type: LoadBalancer, ports: [{port: 80}]}",
            "spec: {type: LoadBalancer, externalTrafficPolicy: Local, healthCheckNodePort: 30080, ports: [{port: 80}]}",
        )
        .replace("nodeName: node-a", &format!("nodeName: {node}"))
}

#[test]
fn a_local_services_new_endpoint_on_the_node_is_announced_once_kube_proxy_forwards_to_it() {
    let (scope, load) = (ServiceScope::default(), LoadOptions::default());
    let mut planner = Planner::waiting_for_proxy();
    let pass = planner.pass(&objects(&local_on("node-b")), &inputs(&scope, &load));
    assert!(pass.model.is_some() && pass.changes.is_empty());
    assert!(planner.take_probe_requests().is_empty());

    // The pod becomes ready on node-a: held until the probe ends.
    let pass = planner.pass(&objects(&local_on("node-a")), &inputs(&scope, &load));
    assert!(pass.changes.is_empty(), "{:?}", pass.changes);
    let requests = planner.take_probe_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].key.clone(), requests[0].port),
        (ServiceKey::new("shop", "a"), 30080)
    );
    let again = planner.pass(&objects(&local_on("node-a")), &inputs(&scope, &load));
    assert!(again.changes.is_empty());
    assert!(planner.take_probe_requests().is_empty());

    assert!(planner.release_probe(&requests[0].key, requests[0].id));
    let pass = planner.pass(&objects(&local_on("node-a")), &inputs(&scope, &load));
    assert_eq!(pass.changes, [announced_to_tor1()]);

    // The pod leaves and comes back: it waits again.
    let pass = planner.pass(&objects(&local_on("node-b")), &inputs(&scope, &load));
    assert_eq!(pass.changes.len(), 1);
    assert!(pass.changes[0].to.is_empty());
    let pass = planner.pass(&objects(&local_on("node-a")), &inputs(&scope, &load));
    assert!(pass.changes.is_empty());
    assert_eq!(planner.take_probe_requests().len(), 1);
}

#[test]
fn a_local_service_ready_on_the_node_when_the_speaker_starts_is_announced_at_once() {
    let (scope, load) = (ServiceScope::default(), LoadOptions::default());
    let mut planner = Planner::waiting_for_proxy();
    let pass = planner.pass(&objects(&local_on("node-a")), &inputs(&scope, &load));
    assert_eq!(pass.changes.len(), 1);
    assert!(planner.take_probe_requests().is_empty());
}
