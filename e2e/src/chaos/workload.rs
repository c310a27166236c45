//! The changes a campaign makes while faults are injected: Services created and deleted
//! (some sharing an IP, some asking for an IP another holds without a sharing key), endpoints
//! moved, a pool range added and removed, invalid CRs applied and deleted. Every change that
//! may take a route away records an excuse for the IPs it touches first.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;

use super::{Rng, Scope, Shared};
use crate::kubectl::Kubectl;
use crate::lab::{self, EndpointState, endpoint_slice_manifest};

/// The namespace of the campaign's Services.
pub const NAMESPACE: &str = "chaos";
/// The BGP pool's range that is always there, and the one pool edits add and remove.
pub const BGP_RANGES: [&str; 2] = ["10.97.0.0/28", "10.97.0.16/28"];
/// The layer-2 pool (on the lab network).
pub const L2_RANGE: &str = "10.99.0.220-10.99.0.229";
/// At most this many of the campaign's Services at once.
const MAX_SERVICES: usize = 14;

/// The campaign's pools and advertisements, applied once before the first storm.
pub fn base(bgp_b: bool) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: chaos-l2, namespace: metallb-system}}
spec: {{ipAddressPools: [chaos-l2]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: chaos-bgp, namespace: metallb-system}}
spec: {{ipAddressPools: [chaos-bgp], peers: [tor, rr]}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: chaos-l2, namespace: metallb-system}}
spec: {{addresses: [{L2_RANGE}], autoAssign: false}}
---
{}",
        bgp_pool(bgp_b)
    )
}

fn bgp_pool(with_b: bool) -> String {
    let ranges = if with_b {
        BGP_RANGES.join(", ")
    } else {
        BGP_RANGES[0].to_string()
    };
    format!(
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: chaos-bgp, namespace: metallb-system}}
spec: {{addresses: [{ranges}], autoAssign: false}}
"
    )
}

/// The campaign's pools as they stand: name and address ranges.
pub fn pools(bgp_b: bool) -> Vec<(&'static str, Vec<&'static str>)> {
    let bgp = if bgp_b {
        BGP_RANGES.to_vec()
    } else {
        vec![BGP_RANGES[0]]
    };
    vec![("chaos-bgp", bgp), ("chaos-l2", vec![L2_RANGE])]
}

#[derive(Debug, Clone)]
struct Svc {
    l2: bool,
    local: bool,
    nodes: Vec<&'static str>,
    share: Option<String>,
    port: u16,
    wants: Option<String>,
}

/// What the workload holds: its Services, whether the pool's second range is in, whether
/// an invalid CR is applied.
#[derive(Debug)]
pub struct Workload {
    kubectl: Kubectl,
    services: BTreeMap<String, Svc>,
    next: u32,
    /// Whether the BGP pool's second range is in.
    pub bgp_b: bool,
    invalid: Option<&'static str>,
}

const INVALID: [(&str, &str); 2] = [
    (
        "ipaddresspool/chaos-overlap",
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: chaos-overlap, namespace: metallb-system}
spec: {addresses: [10.97.0.8/29]}
",
    ),
    (
        "ipaddresspool/chaos-bad-cidr",
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: chaos-bad-cidr, namespace: metallb-system}
spec: {addresses: [10.97.300.0/24]}
",
    ),
];

impl Workload {
    /// The workload of the lab in `dir`, its base applied.
    pub fn start(dir: &Path) -> Result<Workload> {
        let kubectl = lab::kubectl(dir);
        kubectl.apply(&base(true))?;
        Ok(Workload {
            kubectl,
            services: BTreeMap::new(),
            next: 0,
            bgp_b: true,
            invalid: None,
        })
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut all = vec!["--request-timeout=5s"];
        all.extend_from_slice(args);
        self.kubectl.run(&all, stdin)
    }

    /// The IPs Service `name` holds, as the API server says; an error when it cannot say
    /// (a change that would take a route away is not made then: its excuse needs the IPs).
    fn ips_of(&self, name: &str) -> Result<Vec<String>> {
        let text = self.run(
            &["get", "service", "-n", NAMESPACE, name, "-o", "json"],
            None,
        )?;
        let service: serde_json::Value = serde_json::from_str(&text)?;
        Ok(lab::ingress_ips(&service)
            .into_iter()
            .map(str::to_string)
            .collect())
    }

    fn manifest(name: &str, svc: &Svc) -> String {
        let mut annotations = vec![format!(
            "metallb.io/address-pool: {}",
            if svc.l2 { "chaos-l2" } else { "chaos-bgp" }
        )];
        if let Some(key) = &svc.share {
            annotations.push(format!("metallb.io/allow-shared-ip: {key}"));
        }
        if let Some(ip) = &svc.wants {
            annotations.push(format!("metallb.io/loadBalancerIPs: {ip}"));
        }
        let endpoints: Vec<(String, &str, EndpointState)> = svc
            .nodes
            .iter()
            .map(|node| {
                let index = if *node == "n1" { 1 } else { 2 };
                (
                    format!("10.244.{index}.{}", 100 + svc.port % 100),
                    *node,
                    EndpointState::Ready,
                )
            })
            .collect();
        let endpoints: Vec<(&str, &str, EndpointState)> = endpoints
            .iter()
            .map(|(ip, node, state)| (ip.as_str(), *node, *state))
            .collect();
        format!(
            "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {NAMESPACE}
  annotations: {{{}}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: {}
  ports: [{{port: {}, protocol: TCP}}]
---
{}",
            annotations.join(", "),
            if svc.local { "Local" } else { "Cluster" },
            svc.port,
            endpoint_slice_manifest(NAMESPACE, name, &endpoints)
        )
    }

    fn nodes(rng: &mut Rng) -> Vec<&'static str> {
        match rng.below(4) {
            0 => vec!["n1"],
            1 => vec!["n2"],
            _ => vec!["n1", "n2"],
        }
    }

    /// Makes one change chosen by `rng`; returns what it did.
    pub fn step(&mut self, rng: &mut Rng, shared: &Arc<Mutex<Shared>>) -> Result<String> {
        let roll = rng.below(100);
        let count = self.services.len();
        if roll < 30 && count < MAX_SERVICES || count == 0 {
            self.next += 1;
            let name = format!("s{}", self.next);
            let svc = Svc {
                l2: rng.below(10) < 3,
                local: rng.below(3) == 0,
                nodes: Self::nodes(rng),
                share: None,
                port: 80,
                wants: None,
            };
            self.run(&["apply", "-f", "-"], Some(&Self::manifest(&name, &svc)))?;
            let what = format!(
                "create {name} ({}, {}, endpoints on {})",
                if svc.l2 { "layer 2" } else { "BGP" },
                if svc.local { "Local" } else { "Cluster" },
                svc.nodes.join("+")
            );
            self.services.insert(name, svc);
            return Ok(what);
        }
        if roll < 40 && count + 2 <= MAX_SERVICES {
            self.next += 1;
            let key = format!("share-{}", self.next);
            let mut text = String::new();
            let mut names = Vec::new();
            for port in [80, 443] {
                self.next += 1;
                let name = format!("s{}", self.next);
                let svc = Svc {
                    l2: false,
                    local: false,
                    nodes: Self::nodes(rng),
                    share: Some(key.clone()),
                    port,
                    wants: None,
                };
                text.push_str(&Self::manifest(&name, &svc));
                names.push(name.clone());
                self.services.insert(name, svc);
            }
            self.run(&["apply", "-f", "-"], Some(&text))?;
            return Ok(format!("create {} sharing {key}", names.join(" and ")));
        }
        let names: Vec<String> = self.services.keys().cloned().collect();
        let pick = names[rng.below(names.len() as u64) as usize].clone();
        if roll < 47 && count < MAX_SERVICES {
            // An IP another Service holds, asked for without a sharing key: it must stay
            // pending.
            let Some(ip) = self.ips_of(&pick)?.into_iter().next() else {
                return Ok(format!("(no conflict: {pick} has no IP)"));
            };
            self.next += 1;
            let name = format!("s{}", self.next);
            let held = &self.services[&pick];
            let svc = Svc {
                l2: held.l2,
                local: false,
                nodes: Self::nodes(rng),
                share: None,
                port: 8080,
                wants: Some(ip.clone()),
            };
            self.run(&["apply", "-f", "-"], Some(&Self::manifest(&name, &svc)))?;
            self.services.insert(name.clone(), svc);
            return Ok(format!("create {name} asking for {ip}, held by {pick}"));
        }
        if roll < 70 {
            let ips = self.ips_of(&pick)?;
            excuse(shared, Scope::Ips(ips.clone()));
            self.run(
                &[
                    "delete",
                    "-n",
                    NAMESPACE,
                    &format!("service/{pick}"),
                    &format!("endpointslice/{pick}-lab"),
                    "--ignore-not-found",
                ],
                None,
            )?;
            self.services.remove(&pick);
            return Ok(format!("delete {pick} ({})", ips.join(",")));
        }
        if roll < 85 {
            let ips = self.ips_of(&pick)?;
            excuse(shared, Scope::Ips(ips));
            let mut svc = self.services[&pick].clone();
            svc.nodes = Self::nodes(rng);
            let text = Self::manifest(&pick, &svc);
            self.run(&["apply", "-f", "-"], Some(&text))?;
            let what = format!("endpoints of {pick} to {}", svc.nodes.join("+"));
            self.services.insert(pick, svc);
            return Ok(what);
        }
        if roll < 93 {
            return self.toggle_range(shared);
        }
        match self.invalid {
            None => {
                let (name, text) = INVALID[rng.below(INVALID.len() as u64) as usize];
                self.run(&["apply", "-f", "-"], Some(text))?;
                self.invalid = Some(name);
                Ok(format!("invalid CR {name} applied"))
            }
            Some(_) => self.clear_invalid(shared),
        }
    }

    fn toggle_range(&mut self, shared: &Arc<Mutex<Shared>>) -> Result<String> {
        let with_b = !self.bgp_b;
        if !with_b {
            excuse(shared, Scope::Range(BGP_RANGES[1].to_string()));
        }
        self.run(&["apply", "-f", "-"], Some(&bgp_pool(with_b)))?;
        self.bgp_b = with_b;
        shared
            .lock()
            .expect("shared")
            .pools_changed(Instant::now(), with_b);
        Ok(format!(
            "pool chaos-bgp {} {}",
            if with_b { "gains" } else { "loses" },
            BGP_RANGES[1]
        ))
    }

    /// Deletes the invalid CR, if one is applied.
    pub fn clear_invalid(&mut self, shared: &Arc<Mutex<Shared>>) -> Result<String> {
        let Some(name) = self.invalid else {
            return Ok(String::new());
        };
        self.run(
            &["delete", name, "-n", "metallb-system", "--ignore-not-found"],
            None,
        )?;
        self.invalid = None;
        shared
            .lock()
            .expect("shared")
            .pools_changed(Instant::now(), self.bgp_b);
        Ok(format!("invalid CR {name} deleted"))
    }
}

fn excuse(shared: &Arc<Mutex<Shared>>, scope: Scope) {
    shared.lock().expect("shared").excuse_open(scope);
}
