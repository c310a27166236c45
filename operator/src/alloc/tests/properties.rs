//! Properties over random pools and Services.

use super::*;

/// A dual-stack pool, one avoiding buggy IPs, one pinned to namespace n1.
fn property_pools() -> String {
    use crate::fixtures::pool;
    [
        pool("a", r#"{addresses: [10.0.0.0/29, "2001:db8::/126"]}"#),
        pool("b", "{addresses: [10.0.1.0/30], avoidBuggyIPs: true}"),
        pool(
            "c",
            "{addresses: [10.0.2.0/30], serviceAllocation: {priority: 1, namespaces: [n1]}}",
        ),
    ]
    .concat()
}

fn arb_service() -> impl Strategy<Value = AllocService> {
    (
        0..3usize,
        0..40usize,
        prop::option::of(0..2usize),
        0..2usize,
        prop::collection::vec(78..82i32, 1..3),
        prop::option::of(0..24u8),
        prop::option::of(0..4usize),
        0..4usize,
    )
        .prop_map(|(ns, n, key, backend, ports, asked, pool, fam)| {
            let mut s = svc(&format!("n{ns}"), &format!("s{n}"));
            s.sharing_key = key.map(|k| format!("k{k}"));
            s.backend_key = if backend == 0 {
                String::new()
            } else {
                "app=x".into()
            };
            s.ports = ports
                .into_iter()
                .map(|port| Port {
                    protocol: "TCP".into(),
                    port,
                })
                .collect();
            s.requested_ips = Ok(asked
                .map(|a| vec![ip(&format!("10.0.{}.{}", a / 8, a % 8))])
                .unwrap_or_default());
            s.requested_pool = pool.map(|p| ["a", "b", "c", "zz"][p].to_string());
            (s.cluster_families, s.policy) = match fam {
                0 => (vec![Family::V4], FamilyPolicy::SingleStack),
                1 => (vec![Family::V6], FamilyPolicy::SingleStack),
                2 => (vec![Family::V4, Family::V6], FamilyPolicy::PreferDualStack),
                _ => (vec![Family::V6, Family::V4], FamilyPolicy::RequireDualStack),
            };
            if s.cluster_families[0] == Family::V6 || s.cluster_families.len() == 2 {
                s.requested_ips = Ok(Vec::new());
            }
            s
        })
}

fn may_share(a: &AllocService, b: &AllocService) -> bool {
    a.sharing_key.is_some()
        && a.sharing_key == b.sharing_key
        && a.backend_key == b.backend_key
        && !a.ports.iter().any(|p| b.ports.contains(p))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn allocation_is_safe_inside_the_pools_and_a_fixed_point(
        raw in prop::collection::vec(arb_service(), 1..30)
    ) {
        let mut seen = std::collections::BTreeSet::new();
        let services: Vec<AllocService> =
            raw.into_iter().filter(|s| seen.insert(s.key.clone())).collect();
        let config = load(&property_pools());
        let (_, decisions) = allocate_all(&config, &services, &scope());
        let by_key: BTreeMap<&ServiceKey, &AllocService> =
            services.iter().map(|s| (&s.key, s)).collect();
        let mut holders: BTreeMap<IpAddr, Vec<&ServiceKey>> = BTreeMap::new();
        for (key, d) in &decisions {
            for ip in &d.ingress {
                let pool = &config.pools[d.pool.as_ref().expect("assigned IPs name their pool")];
                prop_assert!(pool.contains(*ip), "{key}: {ip} outside pool {}", pool.name);
                holders.entry(*ip).or_default().push(key);
            }
            let families: std::collections::BTreeSet<Family> =
                d.ingress.iter().map(Family::of).collect();
            prop_assert_eq!(families.len(), d.ingress.len(), "one IP per family");
        }
        for (ip, keys) in &holders {
            for (i, a) in keys.iter().enumerate() {
                for b in &keys[i + 1..] {
                    prop_assert!(
                        may_share(by_key[a], by_key[b]),
                        "{ip} given to {a} and {b}, which may not share"
                    );
                }
            }
        }
        // Running again on its own output changes nothing.
        let settled: Vec<AllocService> = services
            .iter()
            .map(|s| AllocService { ingress: decisions[&s.key].ingress.clone(), ..s.clone() })
            .collect();
        let (_, again) = allocate_all(&config, &settled, &scope());
        for (key, d) in &again {
            prop_assert_eq!(&d.ingress, &decisions[key].ingress, "{} moved", key);
            prop_assert!(
                !d.events.iter().any(|e| e.reason == "IPAllocated" || e.reason == "ClearAssignment"),
                "{key}: {:?}", d.events
            );
        }
    }
}
