//! What allocation needs from a Service, read once into plain data.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Service;

use crate::views::{ServiceKey, ServiceScope, annotation, ingress_ips};

/// An IP family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    /// 0 for IPv4, 1 for IPv6.
    pub fn index(self) -> usize {
        match self {
            Family::V4 => 0,
            Family::V6 => 1,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FamilyPolicy {
    /// One family (the default).
    #[default]
    SingleStack,
    /// Both families when the cluster gives the Service two ClusterIPs.
    PreferDualStack,
    /// Both families, or nothing.
    RequireDualStack,
}

/// One `(protocol, port)` a Service listens on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The port number.
    pub port: i32,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol, self.port)
    }
}

/// A Service as allocation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocService {
    /// Namespace and name.
    pub key: ServiceKey,
    /// Labels, for serviceSelectors.
    pub labels: BTreeMap<String, String>,
    /// `spec.type == LoadBalancer`.
    pub is_load_balancer: bool,
    /// `spec.loadBalancerClass`.
    pub load_balancer_class: Option<String>,
    /// Families of `spec.clusterIPs` (else `spec.clusterIP`), in order; empty when the Service
    /// has no ClusterIP or is headless.
    pub cluster_families: Vec<Family>,
    /// `spec.ipFamilies`, in order.
    pub ip_families: Vec<Family>,
    /// `spec.ipFamilyPolicy`.
    pub policy: FamilyPolicy,
    /// The IPs asked for with `metallb.io/loadBalancerIPs` or `spec.loadBalancerIP`, or why
    /// the request cannot be read.
    pub requested_ips: Result<Vec<IpAddr>, String>,
    /// `metallb.io/address-pool`.
    pub requested_pool: Option<String>,
    /// `metallb.io/allow-shared-ip`.
    pub sharing_key: Option<String>,
    /// Empty for `externalTrafficPolicy: Cluster`; the pod selector (`k=v,…`) for `Local`.
    pub backend_key: String,
    /// `spec.ports`.
    pub ports: Vec<Port>,
    /// `status.loadBalancer.ingress[].ip` that parse, in order.
    pub ingress: Vec<IpAddr>,
    /// `metallb.universe.tf/` annotations in use.
    pub deprecated_annotations: Vec<String>,
}

const DEPRECATED_PREFIX: &str = "metallb.universe.tf/";

impl AllocService {
    /// A single-stack IPv4 LoadBalancer Service with a Cluster traffic policy, serving
    /// `ports`, asking for nothing and holding no IP (for fixtures and benchmarks).
    pub fn ipv4(key: ServiceKey, ports: Vec<Port>) -> AllocService {
        AllocService {
            key,
            labels: BTreeMap::new(),
            is_load_balancer: true,
            load_balancer_class: None,
            cluster_families: vec![Family::V4],
            ip_families: vec![Family::V4],
            policy: FamilyPolicy::SingleStack,
            requested_ips: Ok(Vec::new()),
            requested_pool: None,
            sharing_key: None,
            backend_key: String::new(),
            ports,
            ingress: Vec::new(),
            deprecated_annotations: Vec::new(),
        }
    }

    /// Reads a Service.
    pub fn from_service(service: &Service) -> AllocService {
        let meta = &service.metadata;
        let spec = service.spec.clone().unwrap_or_default();
        let cluster_ips: Vec<String> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.clone(),
            _ => spec.cluster_ip.iter().cloned().collect(),
        };
        let cluster_families = cluster_ips
            .iter()
            .filter_map(|ip| IpAddr::from_str(ip).ok())
            .map(|ip| Family::of(&ip))
            .collect();
        let ip_families = spec
            .ip_families
            .iter()
            .flatten()
            .filter_map(|f| match f.as_str() {
                "IPv4" => Some(Family::V4),
                "IPv6" => Some(Family::V6),
                _ => None,
            })
            .collect();
        let policy = match spec.ip_family_policy.as_deref() {
            Some("PreferDualStack") => FamilyPolicy::PreferDualStack,
            Some("RequireDualStack") => FamilyPolicy::RequireDualStack,
            _ => FamilyPolicy::SingleStack,
        };
        let backend_key = if spec.external_traffic_policy.as_deref() == Some("Local") {
            spec.selector
                .as_ref()
                .map(|s| {
                    s.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|p| Port {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                port: p.port,
            })
            .collect();
        let deprecated_annotations = meta
            .annotations
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(DEPRECATED_PREFIX))
            .cloned()
            .collect();
        AllocService {
            key: ServiceKey::of(service),
            labels: meta.labels.clone().unwrap_or_default(),
            is_load_balancer: spec.type_.as_deref() == Some("LoadBalancer"),
            load_balancer_class: spec.load_balancer_class.clone(),
            cluster_families,
            ip_families,
            policy,
            requested_ips: requested_ips(service, spec.load_balancer_ip.as_deref()),
            requested_pool: annotation(service, "address-pool").filter(|p| !p.is_empty()),
            sharing_key: annotation(service, "allow-shared-ip").filter(|k| !k.is_empty()),
            backend_key,
            ports,
            ingress: ingress_ips(service),
            deprecated_annotations,
        }
    }

    /// For manifests not yet applied, which have no ClusterIP: the families the API server
    /// would give the Service (`spec.ipFamilies`, else those of its ingress IPs or requested
    /// IPs, else IPv4; two only when the policy asks for two). Returns whether it assumed.
    pub fn assume_cluster_families(&mut self) -> bool {
        if !self.cluster_families.is_empty() {
            return false;
        }
        let mut families = self.ip_families.clone();
        if families.is_empty() {
            let seen: Vec<IpAddr> = match &self.requested_ips {
                Ok(ips) if !ips.is_empty() => ips.clone(),
                _ => self.ingress.clone(),
            };
            for ip in seen {
                if !families.contains(&Family::of(&ip)) {
                    families.push(Family::of(&ip));
                }
            }
        }
        if families.is_empty() {
            families.push(Family::V4);
        }
        if self.policy != FamilyPolicy::SingleStack && families.len() == 1 {
            let other = match families[0] {
                Family::V4 => Family::V6,
                Family::V6 => Family::V4,
            };
            families.push(other);
        }
        if self.policy == FamilyPolicy::SingleStack {
            families.truncate(1);
        }
        self.cluster_families = families;
        true
    }

    /// Whether this instance allocates for the Service.
    pub fn in_scope(&self, scope: &ServiceScope) -> bool {
        self.is_load_balancer && self.load_balancer_class == scope.load_balancer_class
    }

    /// The families the Service should get LoadBalancer IPs of, in ClusterIP order.
    pub fn wanted_families(&self) -> Vec<Family> {
        match (self.cluster_families.as_slice(), self.policy) {
            ([a, b], FamilyPolicy::PreferDualStack | FamilyPolicy::RequireDualStack) if a != b => {
                vec![*a, *b]
            }
            ([a, ..], _) => vec![*a],
            ([], _) => Vec::new(),
        }
    }
}

/// The requested IPs: the `loadBalancerIPs` annotation or `spec.loadBalancerIP`, at most one
/// per family.
fn requested_ips(service: &Service, spec_ip: Option<&str>) -> Result<Vec<IpAddr>, String> {
    let from_annotation = annotation(service, "loadBalancerIPs").filter(|a| !a.trim().is_empty());
    let spec_ip = spec_ip.map(str::trim).filter(|ip| !ip.is_empty());
    let (text, field) = match (from_annotation, spec_ip) {
        (Some(_), Some(_)) => {
            return Err(
                "both spec.loadBalancerIP and the metallb.io/loadBalancerIPs annotation are set; keep only the annotation"
                    .to_string(),
            );
        }
        (Some(a), None) => (a, "metallb.io/loadBalancerIPs"),
        (None, Some(ip)) => (ip.to_string(), "spec.loadBalancerIP"),
        (None, None) => return Ok(Vec::new()),
    };
    let mut ips = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let ip = IpAddr::from_str(part)
            .map_err(|_| format!("{field}: {part:?} is not an IP address"))?;
        ips.push(ip);
    }
    match ips.as_slice() {
        [_] => Ok(ips),
        [a, b] if Family::of(a) != Family::of(b) => Ok(ips),
        [a, b] => Err(format!(
            "{field}: {a} and {b} are both {}; give at most one IP per family",
            Family::of(a)
        )),
        _ => Err(format!(
            "{field}: {} IPs given; give one, or one IPv4 and one IPv6",
            ips.len()
        )),
    }
}
