//! `render_10k`: BGP intent + FRR model + rendered frr.conf for one node with 10,000 Services
//! over 2 pools, announced to 4 peers (2 iBGP with LOCAL_PREF, 2 eBGP; one advertisement adds
//! a community). Prints `BENCH render_10k <median ms> ms` and the size of the output.
//!
//! Run through `hack/bench.sh render_10k`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Instant;

use ferrolb::bgp::{self, IntentInputs};
use ferrolb::config::{self, ClusterObjects, LoadOptions};
use ferrolb::frr::{self, NodeFacts};
use ferrolb::manifest;
use ferrolb::views::{LbService, NodeView, ServiceKey, ServiceScope, ServingEndpoints};

const SERVICES: u32 = 10_000;
const RUNS: usize = 21;

fn configuration(mixed: bool) -> ClusterObjects {
    let mut yaml = String::new();
    if mixed {
        for tier in ["a", "b"] {
            yaml.push_str(&format!(
                "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: tier-{tier}}}\nspec: {{ipAddressPools: [gold, silver], communities: ['64500:{}'], serviceSelectors: [{{matchLabels: {{tier: {tier}}}}}]}}\n---\n",
                if tier == "a" { 1 } else { 2 }
            ));
        }
    }
    for (pool, cidr) in [("gold", "10.10.0.0/16"), ("silver", "10.20.0.0/16")] {
        yaml.push_str(&format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {pool}}}\nspec: {{addresses: [{cidr}]}}\n---\n"
        ));
    }
    yaml.push_str("apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: gold}\nspec: {ipAddressPools: [gold], localPref: 200, communities: ['64500:100']}\n---\n");
    yaml.push_str("apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: silver}\nspec: {ipAddressPools: [silver], localPref: 100}\n---\n");
    for (i, asn) in [64500, 64500, 64501, 64502].iter().enumerate() {
        yaml.push_str(&format!(
            "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: peer-{i}}}\nspec: {{myASN: 64500, peerASN: {asn}, peerAddress: 192.168.0.{}}}\n---\n",
            i + 1
        ));
    }
    let parsed = manifest::parse(&yaml, "bench", "metallb-system").expect("bench YAML parses");
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    parsed.objects
}

fn services() -> (Vec<LbService>, BTreeMap<ServiceKey, ServingEndpoints>) {
    let mut services = Vec::new();
    let mut endpoints = BTreeMap::new();
    for i in 0..SERVICES {
        let base: u32 = if i % 2 == 0 { 0x0A0A_0000 } else { 0x0A14_0000 };
        let ip = Ipv4Addr::from(base + 1 + i / 2);
        let key = ServiceKey::new("bench", &format!("svc-{i}"));
        endpoints.insert(
            key.clone(),
            ServingEndpoints {
                nodes: ["node-a"].into_iter().collect(),
                ready: ["node-a"].into_iter().collect(),
                any: true,
            },
        );
        services.push(LbService {
            key,
            labels: [(
                "tier".to_string(),
                if i % 4 < 2 { "a" } else { "b" }.to_string(),
            )]
            .into(),
            is_load_balancer: true,
            load_balancer_class: None,
            traffic_policy_local: false,
            ingress: vec![ip.into()],
            sharing_key: None,
            health_check_node_port: None,
        });
    }
    (services, endpoints)
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !wanted.is_empty() && !wanted.iter().any(|w| w == "render_10k") {
        return;
    }
    let median = measure("render_10k", false);
    measure("render_10k_mixed", true);
    println!("BENCH render_10k {median:.1} ms");
}

/// Runs the scenario `RUNS` times, prints its phases and size, and returns the median in ms.
fn measure(label: &str, mixed: bool) -> f64 {
    let config =
        config::load(&configuration(mixed), &LoadOptions::default()).expect("bench config loads");
    let (services, endpoints) = services();
    let node = NodeView::named("node-a");
    let scope = ServiceScope::default();
    let mut times = Vec::with_capacity(RUNS);
    let mut size = (0, 0);
    let mut phases = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..RUNS {
        let start = Instant::now();
        let intent = bgp::intent(
            &config,
            &IntentInputs {
                node: &node,
                services: &services,
                endpoints: &endpoints,
                scope: &scope,
                ignore_exclude_label: false,
                held: &BTreeSet::new(),
            },
        );
        let t_intent = start.elapsed();
        let model = frr::build(&config, &intent, &node, NodeFacts::default()).expect("words");
        let t_model = start.elapsed();
        let text = frr::render(&model, frr::Dialect::default()).expect("renders");
        let t_render = start.elapsed();
        times.push(t_render.as_secs_f64() * 1000.0);
        phases[0].push(t_intent.as_secs_f64() * 1000.0);
        phases[1].push((t_model - t_intent).as_secs_f64() * 1000.0);
        phases[2].push((t_render - t_model).as_secs_f64() * 1000.0);
        size = (text.len(), text.lines().count());
    }
    times.sort_by(f64::total_cmp);
    for p in &mut phases {
        p.sort_by(f64::total_cmp);
    }
    println!(
        "{label} phases (median ms): intent {:.1}, model {:.1}, render {:.1}",
        phases[0][RUNS / 2],
        phases[1][RUNS / 2],
        phases[2][RUNS / 2]
    );
    println!(
        "{label}: {} Services, 4 peers -> {} lines, {} bytes; median {:.1} ms, min {:.1} ms, max {:.1} ms over {RUNS} runs",
        SERVICES,
        size.1,
        size.0,
        times[RUNS / 2],
        times[0],
        times[RUNS - 1]
    );
    times[RUNS / 2]
}
