//! Manifests for FRR-side tests and benchmarks, and the node model ferrolb builds from them.
//!
//! [`random`] draws a configuration within ferrolb's grammar from a seed: pools of both
//! families, BGP peers with every session option ferrolb renders, BFD profiles,
//! advertisements with communities, local preference, aggregation, peer and Service
//! selectors, and Services with or without a label. Peer `tor1` (10.98.0.1) and `tor2`
//! (10.98.0.2) are real routers in the delta test; the other peers never answer.
//! [`announced`] is a node with thousands of Services announced to one peer, for benchmarks.

use anyhow::{Context, Result, anyhow};

use ferrolb::config::{self, LoadOptions};
use ferrolb::frr::{self, Dialect, FrrConfig, NodeFacts};
use ferrolb::views::ServiceScope;
use ferrolb::{dry_run, manifest};

/// The node every model is built for.
pub const NODE: &str = "node-a";

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn draw(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.draw() % n.max(1)
    }

    /// True with probability `p` percent.
    pub fn chance(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The node's FRR model from manifests, as its speaker builds it (Services without
/// EndpointSlices have endpoints everywhere).
pub fn model(manifests: &str) -> Result<FrrConfig> {
    let parsed =
        manifest::parse(manifests, "generated", "metallb-system").map_err(|e| anyhow!("{e}"))?;
    if !parsed.errors.is_empty() {
        return Err(anyhow!("{:?}", parsed.errors));
    }
    let config = config::load(&parsed.objects, &LoadOptions::default()).map_err(|errors| {
        anyhow!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let node = dry_run::prepare(config, &parsed.objects, NODE, ServiceScope::default());
    frr::build(
        &node.config,
        &node.intent(),
        &node.node,
        NodeFacts::default(),
    )
    .context("building the model")
}

/// The model rendered for FRR of `dialect`.
pub fn render(model: &FrrConfig, dialect: Dialect) -> Result<String> {
    frr::render(model, dialect).context("rendering")
}

const POOLS: [(&str, &str); 3] = [
    ("blue", "198.51.100.0/24"),
    ("green", "203.0.113.0/25"),
    ("six", "2001:db8:1::/120"),
];
const COMMUNITIES: [&str; 5] = [
    "64512:100",
    "64512:200",
    "65535:65281",
    "large:64512:1:1",
    "64513:7",
];

fn pool(name: &str, cidr: &str) -> String {
    format!(
        "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}}}\nspec: {{addresses: [\"{cidr}\"]}}\n"
    )
}

/// A random configuration for the delta test's node.
pub fn random(rng: &mut Rng) -> String {
    let mut out = String::new();
    let pools: Vec<(&str, &str)> = POOLS.iter().copied().filter(|_| rng.chance(80)).collect();
    for (name, cidr) in &pools {
        out.push_str(&pool(name, cidr));
    }
    let profiles: Vec<&str> = ["fast", "slow"]
        .into_iter()
        .filter(|_| rng.chance(60))
        .collect();
    for name in &profiles {
        let mut spec = Vec::new();
        if rng.chance(50) {
            spec.push(format!("receiveInterval: {}", rng.pick(&[100, 200, 300])));
        }
        if rng.chance(50) {
            spec.push(format!("transmitInterval: {}", rng.pick(&[100, 250, 300])));
        }
        if rng.chance(30) {
            spec.push(format!("detectMultiplier: {}", rng.pick(&[3, 5])));
        }
        // Echo mode is refused for peers that carry IPv6 (BFD cannot echo there).
        if rng.chance(20) && pools.iter().all(|(_, c)| !c.contains(':')) {
            spec.push("echoMode: true".into());
        }
        if rng.chance(20) {
            spec.push("passiveMode: true".into());
        }
        if rng.chance(20) {
            spec.push(format!("minimumTtl: {}", rng.pick(&[200, 254])));
        }
        out.push_str(&format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {{name: {name}}}\nspec: {{{}}}\n",
            spec.join(", ")
        ));
    }
    let mut peers: Vec<&str> = Vec::new();
    // tor1's session options never change; only its BFD profile may.
    let mut tor1 =
        "myASN: 64512, peerASN: 64513, peerAddress: 10.98.0.1, connectTime: 1s".to_string();
    if !profiles.is_empty() && rng.chance(50) {
        tor1.push_str(&format!(", bfdProfile: {}", rng.pick(&profiles)));
    }
    out.push_str(&peer("tor1", &tor1));
    peers.push("tor1");
    let others: [(&str, &str, u32); 5] = [
        ("tor2", "10.98.0.2", 64513),
        ("far", "10.98.0.3", 64520),
        ("inside", "10.98.0.4", 64512),
        ("v6", "fd98::5", 64521),
        ("spare", "10.98.0.6", 64522),
    ];
    for (name, address, asn) in others {
        if !rng.chance(50) {
            continue;
        }
        let mut spec = format!("myASN: 64512, peerASN: {asn}, peerAddress: \"{address}\"");
        if rng.chance(30) {
            spec.push_str(&format!(", holdTime: {}s", rng.pick(&[9, 30, 90])));
        }
        if rng.chance(25) {
            spec.push_str(", connectTime: 2s");
        }
        if rng.chance(20) && name != "tor2" {
            spec.push_str(", password: s3cret");
        }
        if rng.chance(20) && asn != 64512 {
            spec.push_str(", ebgpMultiHop: true");
        }
        if rng.chance(20) && name != "tor2" {
            spec.push_str(&format!(", peerPort: {}", rng.pick(&[1179, 2179])));
        }
        if rng.chance(20) && !address.contains(':') {
            spec.push_str(", sourceAddress: 10.98.0.11");
        }
        if rng.chance(15) {
            spec.push_str(", enableGracefulRestart: true");
        }
        if !profiles.is_empty() && rng.chance(30) {
            spec.push_str(&format!(", bfdProfile: {}", rng.pick(&profiles)));
        }
        out.push_str(&peer(name, &spec));
        peers.push(name);
    }
    for (i, (pool, cidr)) in pools.iter().enumerate() {
        let v6 = cidr.contains(':');
        // One LOCAL_PREF per pool: MetalLB refuses two for the same prefixes.
        let local_pref = rng.chance(30).then(|| *rng.pick(&[100, 150, 200]));
        for j in 0..=rng.below(2) {
            let mut spec = format!("ipAddressPools: [{pool}]");
            let chosen: Vec<&str> = COMMUNITIES
                .iter()
                .copied()
                .filter(|_| rng.chance(25))
                .collect();
            if !chosen.is_empty() {
                let quoted: Vec<String> = chosen.iter().map(|c| format!("\"{c}\"")).collect();
                spec.push_str(&format!(", communities: [{}]", quoted.join(", ")));
            }
            if let Some(lp) = local_pref {
                spec.push_str(&format!(", localPref: {lp}"));
            }
            let aggregated = rng.chance(15);
            if aggregated {
                if v6 {
                    spec.push_str(", aggregationLengthV6: 124");
                } else {
                    spec.push_str(", aggregationLength: 30");
                }
            }
            if rng.chance(30) {
                let some: Vec<&str> = peers.iter().copied().filter(|_| rng.chance(50)).collect();
                if !some.is_empty() {
                    spec.push_str(&format!(", peers: [{}]", some.join(", ")));
                }
            }
            if !aggregated && rng.chance(30) {
                spec.push_str(&format!(
                    ", serviceSelectors: [{{matchLabels: {{hot: \"{}\"}}}}]",
                    rng.pick(&["yes", "no"])
                ));
            }
            out.push_str(&format!(
                "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: ad-{i}-{j}}}\nspec: {{{spec}}}\n"
            ));
        }
    }
    let count = rng.below(24);
    for s in 0..count {
        if pools.is_empty() {
            break;
        }
        let (_, cidr) = rng.pick(&pools);
        let host = 1 + rng.below(20);
        let ip = if cidr.contains(':') {
            format!("2001:db8:1::{host:x}")
        } else {
            format!("{}.{host}", cidr.rsplit_once('.').map_or("", |(a, _)| a))
        };
        out.push_str(&service(
            &format!("svc-{s}"),
            &ip,
            if rng.chance(50) { "yes" } else { "no" },
        ));
    }
    out
}

fn peer(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n"
    )
}

fn service(name: &str, ip: &str, hot: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: web, labels: {{hot: \"{hot}\"}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}\nstatus: {{loadBalancer: {{ingress: [{{ip: \"{ip}\"}}]}}}}\n"
    )
}

/// A node announcing Services to `tor1` from two pools, as a large cluster would: `bulk`
/// (10.64.0.0/10, Services numbered `bulk`, no attributes) and `edge` (10.128.0.0/16, the
/// first `edge` Services, with `community` when given). Every Service has endpoints.
pub fn announced(bulk: std::ops::Range<u32>, edge: u32, community: Option<&str>) -> String {
    let mut out = pool("bulk", "10.64.0.0/10");
    out.push_str(&pool("edge", "10.128.0.0/16"));
    out.push_str(&peer(
        "tor1",
        "myASN: 64512, peerASN: 64513, peerAddress: 10.98.0.1, connectTime: 1s",
    ));
    out.push_str(
        "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: bulk}\nspec: {ipAddressPools: [bulk]}\n",
    );
    let communities = community
        .map(|c| format!(", communities: [\"{c}\"]"))
        .unwrap_or_default();
    out.push_str(&format!(
        "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: edge}}\nspec: {{ipAddressPools: [edge]{communities}}}\n"
    ));
    // One List document: a plain file of 10,000 documents is legal, but a List is what
    // `kubectl get -o yaml` gives.
    out.push_str("---\napiVersion: v1\nkind: List\nitems:\n");
    let base = |a: u8, b: u8| u32::from(std::net::Ipv4Addr::new(a, b, 0, 0));
    let services = bulk
        .map(|n| ("bulk", n, base(10, 64) + n + 1))
        .chain((0..edge).map(|n| ("edge", n, base(10, 128) + n + 1)));
    for (pool, n, ip) in services {
        let ip = std::net::Ipv4Addr::from(ip);
        out.push_str(&format!(
            "- {{apiVersion: v1, kind: Service, metadata: {{name: {pool}{n}, namespace: bulk}}, spec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}, status: {{loadBalancer: {{ingress: [{{ip: \"{ip}\"}}]}}}}}}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_configurations_load_and_render() {
        let mut rng = Rng::new(7);
        for _ in 0..200 {
            let manifests = random(&mut rng);
            let model = model(&manifests).unwrap_or_else(|e| panic!("{e}\n{manifests}"));
            render(&model, Dialect::default()).unwrap();
        }
    }

    #[test]
    fn the_bulk_node_announces_every_service() {
        let model = model(&announced(0..100, 20, Some("64512:7"))).unwrap();
        let networks = &model.routers[0].ipv4.as_ref().unwrap().networks;
        assert_eq!(networks.len(), 120);
        // Each pool is one range entry.
        let entries: usize = model
            .ipv4_prefix_lists
            .iter()
            .map(|l| l.entries.len())
            .sum();
        assert_eq!(entries, 2);
    }
}
