use super::*;
use crate::config::{self, LoadOptions};

/// A pool of two IPs; a Service holding one, two wanting one (one with a deprecated annotation), and one no longer a LoadBalancer.
fn input_yaml() -> String {
    use crate::fixtures::{pool, service};
    [
        pool("prod", "{addresses: [10.0.0.0/31]}"),
        service(
            "shop",
            "kept",
            ", annotations: {metallb.io/ip-allocated-from-pool: prod}",
            r#"spec: {type: LoadBalancer, clusterIP: 10.96.0.1, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 10.0.0.1, ipMode: VIP}]}}"#,
        ),
        service(
            "shop",
            "new",
            ", annotations: {metallb.universe.tf/allow-shared-ip: k}",
            "spec: {type: LoadBalancer, clusterIP: 10.96.0.2, ports: [{port: 80}]}",
        ),
        service(
            "shop",
            "waiting",
            "",
            "spec: {type: LoadBalancer, clusterIP: 10.96.0.3, ports: [{port: 80}]}",
        ),
        service(
            "shop",
            "was-lb",
            ", annotations: {metallb.io/ip-allocated-from-pool: prod}",
            r#"spec: {type: ClusterIP, clusterIP: 10.96.0.4}
status: {loadBalancer: {ingress: [{ip: 10.0.0.0}]}}"#,
        ),
    ]
    .concat()
}

fn input() -> (Config, Vec<Service>) {
    let parsed = crate::manifest::parse(&input_yaml(), "t", "metallb-system").unwrap();
    let config = config::load(&parsed.objects, &LoadOptions::default()).unwrap();
    (config, parsed.objects.services)
}

fn apply(services: &mut [Service], plan: &Plan) {
    for write in &plan.writes {
        let service = services
            .iter_mut()
            .find(|s| s.metadata.name.as_deref() == Some(write.key.name.as_str()))
            .unwrap();
        let mut value = serde_json::to_value(&*service).unwrap();
        for patch in [&write.status, &write.metadata].into_iter().flatten() {
            crate::controller::tests::merge_patch(&mut value, patch);
        }
        *service = serde_json::from_value(value).unwrap();
    }
}

#[test]
fn a_pass_writes_what_differs_and_a_second_pass_writes_nothing() {
    let (config, mut services) = input();
    let mut memory = EventMemory::default();
    let scope = ServiceScope::default();
    let first = plan(&config, &services, &scope, &mut memory);
    let keys: Vec<&str> = first.writes.iter().map(|w| w.key.name.as_str()).collect();
    assert_eq!(
        keys,
        ["new", "was-lb"],
        "kept is already right; waiting has nothing"
    );
    let new = &first.writes[0];
    assert_eq!(
        new.status,
        Some(
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.0", "ipMode": "VIP"}]}}})
        )
    );
    assert_eq!(
        new.metadata,
        Some(json!({"metadata": {"annotations": {POOL_ANNOTATION: "prod"}}}))
    );
    let was = &first.writes[1];
    assert_eq!(
        was.status,
        Some(json!({"status": {"loadBalancer": {"ingress": null}}}))
    );
    assert_eq!(
        was.metadata,
        Some(json!({"metadata": {"annotations": {POOL_ANNOTATION: null}}}))
    );
    let reasons: Vec<(&str, &str)> = first
        .events
        .iter()
        .map(|(k, e)| (k.name.as_str(), e.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("new", "IPAllocated"),
            ("new", "deprecatedAnnotation"),
            ("waiting", "AllocationFailed")
        ]
    );
    assert_eq!(first.pools["prod"].assigned_ipv4, 2);
    assert_eq!(first.pools["prod"].available_ipv4, 0);
    assert_eq!((first.assigned, first.pending), (2, 1));

    apply(&mut services, &first);
    let second = plan(&config, &services, &scope, &mut memory);
    assert!(second.writes.is_empty(), "{:?}", second.writes);
    assert!(
        second.events.is_empty(),
        "the same reason is not repeated: {:?}",
        second.events
    );
}

#[test]
fn an_ip_written_without_its_mode_gets_ip_mode_vip_and_keeps_the_ip() {
    let (config, mut services) = input();
    let kept = services
        .iter_mut()
        .find(|s| s.metadata.name.as_deref() == Some("kept"))
        .unwrap();
    // As MetalLB or an older ferrolb left it: the IP alone.
    kept.status =
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}})).unwrap();
    let mut memory = EventMemory::default();
    let first = plan(&config, &services, &ServiceScope::default(), &mut memory);
    let write = first.writes.iter().find(|w| w.key.name == "kept").unwrap();
    assert_eq!(
        write.status,
        Some(
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1", "ipMode": "VIP"}]}}})
        )
    );
    assert_eq!(write.metadata, None, "the pool annotation is already right");
    assert!(
        !first.events.iter().any(|(k, _)| k.name == "kept"),
        "the same IP is no news: {:?}",
        first.events
    );
    apply(&mut services, &first);
    let second = plan(&config, &services, &ServiceScope::default(), &mut memory);
    assert!(second.writes.is_empty(), "{:?}", second.writes);
}

#[test]
fn configuration_state_carries_the_errors_and_keeps_transition_times() {
    let then = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    let later = Time(k8s_openapi::jiff::Timestamp::from_second(60).unwrap());
    let valid = configuration_state(&Ok(()), &Ok(()), None, &then);
    assert_eq!(valid.result, Some(ConfigurationStateResult::Valid));
    assert_eq!(valid.error_summary, None);
    let types: Vec<&str> = valid
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(types, ["poolReconcilerValid", "configReconcilerValid"]);
    let parsed = crate::manifest::parse(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [nope]}\n",
            "t",
            "metallb-system",
        )
        .unwrap();
    let errors = config::load(&parsed.objects, &LoadOptions::default()).unwrap_err();
    let invalid = configuration_state(&Err(errors.clone()), &Err(errors), Some(&valid), &later);
    assert_eq!(invalid.result, Some(ConfigurationStateResult::Invalid));
    assert!(
        invalid
            .error_summary
            .as_deref()
            .unwrap()
            .contains("IPAddressPool/metallb-system/p")
    );
    let conditions = invalid.conditions.clone().unwrap();
    assert_eq!(
        (conditions[0].status.as_str(), conditions[0].reason.as_str()),
        ("False", "ConfigurationError")
    );
    assert!(conditions[0].message.contains("last valid pools"));
    assert_eq!(conditions[0].last_transition_time, later);
    // Unchanged status keeps the time it changed at.
    let again = configuration_state(
        &Err(Vec::new()),
        &Err(Vec::new()),
        Some(&invalid),
        &Time(k8s_openapi::jiff::Timestamp::from_second(120).unwrap()),
    );
    assert_eq!(again.conditions.unwrap()[0].last_transition_time, later);
    // Only another kind invalid: allocation is fine, the result is still Invalid.
    let peer_error = configuration_state(&Ok(()), &Err(Vec::new()), None, &then);
    assert_eq!(peer_error.result, Some(ConfigurationStateResult::Invalid));
}

mod incremental {
    use super::*;
    use proptest::prelude::*;

    /// Two automatic pools of four and two IPs, and a manual one.
    fn pools() -> String {
        use crate::fixtures::pool;
        [
            pool("small", "{addresses: [10.0.0.0/30]}"),
            pool("spare", "{addresses: [10.0.1.0/31]}"),
            pool("manual", "{addresses: [10.0.2.0/30], autoAssign: false}"),
        ]
        .concat()
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// Create or replace Service `n` (sharing key, requested pool, requested IP).
        Put(u8, Option<u8>, Option<u8>, Option<u8>),
        Delete(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u8..8, proptest::option::of(0u8..2), proptest::option::of(0u8..3), proptest::option::of(0u8..6))
                .prop_map(|(n, k, p, ip)| Step::Put(n, k, p, ip)),
            1 => (0u8..8).prop_map(Step::Delete),
        ]
    }

    fn service(n: u8, key: Option<u8>, pool: Option<u8>, ip: Option<u8>, version: u64) -> Service {
        let mut annotations = serde_json::Map::new();
        if let Some(k) = key {
            annotations.insert("metallb.io/allow-shared-ip".into(), json!(format!("k{k}")));
        }
        if let Some(p) = pool {
            annotations.insert(
                "metallb.io/address-pool".into(),
                json!(["small", "spare", "manual"][p as usize]),
            );
        }
        if let Some(i) = ip {
            let ip = [
                "10.0.0.1", "10.0.0.2", "10.0.1.0", "10.0.2.1", "10.0.2.2", "10.9.9.9",
            ][i as usize];
            annotations.insert("metallb.io/loadBalancerIPs".into(), json!(ip));
        }
        serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("s{n}"), "namespace": "shop", "resourceVersion": version.to_string(), "annotations": annotations},
                "spec": {"type": "LoadBalancer", "clusterIP": format!("10.96.0.{n}"), "ports": [{"port": 80, "protocol": "TCP"}]},
            }))
            .unwrap()
    }

    /// Applies the writes as the API server would (a new resourceVersion each).
    fn write(services: &mut [Service], plan: &Plan, version: &mut u64) {
        apply(services, plan);
        for w in &plan.writes {
            if let Some(s) = services
                .iter_mut()
                .find(|s| s.metadata.name.as_deref() == Some(w.key.name.as_str()))
            {
                *version += 1;
                s.metadata.resource_version = Some(version.to_string());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Kept allocation, one change at a time: every result is what a fresh start keeps
        /// (a cold plan over it writes nothing), a second pass writes nothing, and no IP
        /// is held by two Services that do not share it. With `sparse`, each pass is told
        /// only which Services changed, as the watch says ([`plan_changed`]).
        #[test]
        fn incremental_passes_reach_what_a_fresh_start_keeps(steps in proptest::collection::vec(step(), 1..24), sparse in proptest::bool::ANY) {
            let parsed = crate::manifest::parse(&pools(), "t", "metallb-system").unwrap();
            let config = config::load(&parsed.objects, &LoadOptions { namespace: "metallb-system".into() }).unwrap();
            let scope = ServiceScope::default();
            let mut memory = EventMemory::default();
            let mut services: Vec<Service> = Vec::new();
            let mut version = 1u64;
            for step in steps {
                version += 1;
                let touched = match &step {
                    Step::Put(n, ..) | Step::Delete(n) => ServiceKey::new("shop", &format!("s{n}")),
                };
                match step {
                    Step::Put(n, k, p, ip) => {
                        let mut fresh = service(n, k, p, ip, version);
                        if let Some(old) = services.iter_mut().find(|s| s.metadata.name == fresh.metadata.name) {
                            // An edit keeps what the controller wrote.
                            fresh.status = old.status.clone();
                            if let Some(pool) = old.metadata.annotations.as_ref().and_then(|a| a.get(POOL_ANNOTATION)) {
                                fresh.metadata.annotations.get_or_insert_with(Default::default).insert(POOL_ANNOTATION.into(), pool.clone());
                            }
                            *old = fresh;
                        } else {
                            services.push(fresh);
                        }
                    }
                    Step::Delete(n) => services.retain(|s| s.metadata.name.as_deref() != Some(format!("s{n}").as_str())),
                }
                let pass = |changed: Vec<ServiceKey>, services: &[Service], memory: &mut EventMemory| {
                    let find = |key: &ServiceKey| services.iter().find(|s| ServiceKey::of(s) == *key);
                    match sparse.then(|| plan_changed(&config, changed, find, &scope, memory)).flatten() {
                        Some(plan) => plan,
                        None => plan(&config, services, &scope, memory),
                    }
                };
                let first = pass(vec![touched], &services, &mut memory);
                write(&mut services, &first, &mut version);
                let written: Vec<ServiceKey> = first.writes.iter().map(|w| w.key.clone()).collect();
                let again = pass(written, &services, &mut memory);
                prop_assert!(again.writes.is_empty(), "second pass wrote {:?}", again.writes);
                let fresh = plan(&config, &services, &scope, &mut EventMemory::default());
                prop_assert!(fresh.writes.is_empty(), "a fresh start would write {:?}", fresh.writes);
                prop_assert_eq!((again.assigned, again.pending), (fresh.assigned, fresh.pending));
                prop_assert_eq!(&again.usage, &fresh.usage);
                let mut holders: HashMap<String, Vec<Option<String>>> = HashMap::new();
                for s in &services {
                    for ip in crate::views::ingress_ips(s) {
                        let key = s.metadata.annotations.as_ref().and_then(|a| a.get("metallb.io/allow-shared-ip")).cloned();
                        holders.entry(ip.to_string()).or_default().push(key);
                    }
                }
                for (ip, keys) in holders {
                    prop_assert!(keys.len() == 1 || keys.iter().all(|k| k.is_some() && *k == keys[0]), "{} held by {:?}", ip, keys);
                }
            }
        }
    }
}
