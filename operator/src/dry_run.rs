//! A dry run over a set of objects (from manifest files or read from a cluster): what the
//! controller would allocate, and one node's BGP intent, FRR configuration and layer-2
//! duties, computed exactly as the controller and that node's speaker would. The offline
//! tools (`render`, `allocate`, `explain`) are built on it.
//!
//! What a cluster would supply but files may not is assumed and reported as a warning:
//! a node without a Node object has only its hostname label; a Service without
//! EndpointSlices is assumed to have ready endpoints on every node; every node named in the
//! input is assumed alive. Services without an ingress IP are first given one by the
//! allocator, exactly as the controller would; those it cannot serve are left out, with the
//! reason as a warning.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::alloc::{self, AllocService, Decision};
use crate::bgp::{self, IntentInputs, NodeIntent, ServiceBgp};
use crate::config::{ClusterObjects, Config};
use crate::frr::{self, Dialect, NodeFacts, RenderError};
use crate::l2::{self, L2Inputs};
use crate::views::{self, LbService, NodeView, ServiceKey, ServiceScope, ServingEndpoints};

/// One node of the dry run, ready for the pure functions.
#[derive(Clone, Debug)]
pub struct NodeDryRun {
    /// The checked configuration.
    pub config: Config,
    /// The node.
    pub node: NodeView,
    /// Every node known (the node itself included), all assumed alive.
    pub members: Vec<NodeView>,
    /// In-scope and out-of-scope Services alike.
    pub services: Vec<LbService>,
    /// Serving endpoints per Service (observed or assumed).
    pub endpoints: BTreeMap<ServiceKey, ServingEndpoints>,
    /// Which Services are handled.
    pub scope: ServiceScope,
    /// What was assumed.
    pub warnings: Vec<String>,
}

/// Prepares `node_name`'s view of the objects under the loaded configuration.
pub fn prepare(
    config: Config,
    objects: &ClusterObjects,
    node_name: &str,
    scope: ServiceScope,
) -> NodeDryRun {
    let mut warnings = Vec::new();
    let mut members: Vec<NodeView> = objects.nodes.iter().map(NodeView::from_node).collect();
    let node = match members.iter().find(|n| n.name == node_name) {
        Some(n) => n.clone(),
        None => {
            warnings.push(format!(
                "no Node {node_name:?} in the input: assuming it has only the label kubernetes.io/hostname={node_name}"
            ));
            let n = NodeView::named(node_name);
            members.push(n.clone());
            n
        }
    };
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let allocation = allocate(&config, objects, &scope);
    let mut services: Vec<LbService> = objects
        .services
        .iter()
        .map(LbService::from_service)
        .collect();
    for service in services.iter_mut().filter(|s| s.in_scope(&scope)) {
        let Some(decision) = allocation.get(&service.key) else {
            continue;
        };
        if decision.ingress != service.ingress {
            if decision.ingress.is_empty() {
                warnings.push(format!(
                    "Service {} gets no IP and is left out: {}",
                    service.key,
                    decision
                        .pending
                        .as_deref()
                        .unwrap_or("its IPs are not valid")
                ));
            } else {
                let ips = decision
                    .ingress
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                warnings.push(if service.ingress.is_empty() {
                    format!(
                        "Service {} has no IP yet; allocated {ips} as the controller would",
                        service.key
                    )
                } else {
                    format!(
                        "Service {}: the controller would not keep its status.loadBalancer.ingress and would give it {ips}",
                        service.key
                    )
                });
            }
            service.ingress = decision.ingress.clone();
        }
    }
    let mut endpoints = views::serving_endpoints(&objects.endpoint_slices);
    for service in services.iter().filter(|s| s.in_scope(&scope)) {
        if service.ingress.is_empty() {
            continue;
        }
        if !endpoints.contains_key(&service.key) {
            warnings.push(format!(
                "no EndpointSlice for Service {}: assuming ready endpoints on every node",
                service.key
            ));
            endpoints.insert(
                service.key.clone(),
                ServingEndpoints {
                    nodes: members.iter().map(|n| n.name.clone()).collect(),
                    ready: members.iter().map(|n| n.name.clone()).collect(),
                    any: true,
                },
            );
        }
    }
    NodeDryRun {
        config,
        node,
        members,
        services,
        endpoints,
        scope,
        warnings,
    }
}

/// Runs the allocator over the input's Services, as the controller would on start. Services
/// without a ClusterIP (manifests not yet applied) get the families the API server would give
/// them.
pub fn allocate(
    config: &Config,
    objects: &ClusterObjects,
    scope: &ServiceScope,
) -> BTreeMap<ServiceKey, Decision> {
    allocate_explaining(config, objects, scope, None)
}

/// [`allocate`], with the decision of the Service `explain` carrying its [`alloc::Choice`].
pub fn allocate_explaining(
    config: &Config,
    objects: &ClusterObjects,
    scope: &ServiceScope,
    explain: Option<&ServiceKey>,
) -> BTreeMap<ServiceKey, Decision> {
    let services: Vec<AllocService> = objects
        .services
        .iter()
        .map(|s| {
            let mut service = AllocService::from_service(s);
            service.assume_cluster_families();
            service
        })
        .collect();
    alloc::allocate_all_explaining(config, &services, scope, explain).1
}

impl NodeDryRun {
    /// The node's BGP intent.
    pub fn intent(&self) -> NodeIntent {
        bgp::intent(
            &self.config,
            &IntentInputs {
                node: &self.node,
                services: &self.services,
                endpoints: &self.endpoints,
                scope: &self.scope,
                ignore_exclude_label: false,
                held: &BTreeSet::new(),
            },
        )
    }

    /// The frr.conf the node's speaker would apply to FRR of `dialect`.
    pub fn render_frr(&self, facts: NodeFacts, dialect: Dialect) -> Result<String, RenderError> {
        let model = frr::build(&self.config, &self.intent(), &self.node, facts)?;
        frr::render(&model, dialect)
    }

    /// What the node announces, as JSON: BGP prefixes per session with their attributes,
    /// the BGP outcome per Service, and the IPs the node answers ARP/NDP for.
    pub fn announcements(&self) -> Value {
        let intent = self.intent();
        let mut behind: BTreeMap<IpNet, Vec<String>> = BTreeMap::new();
        for (key, outcome) in &intent.services {
            if let ServiceBgp::Announced { prefixes, .. } = outcome {
                for prefix in prefixes {
                    behind.entry(*prefix).or_default().push(key.to_string());
                }
            }
        }
        let sessions: Vec<Value> = intent
            .sessions
            .iter()
            .map(|s| {
                let prefixes: Vec<Value> = s
                    .announcements
                    .iter()
                    .map(|(prefix, attributes)| {
                        let mut v = json!({ "prefix": prefix.to_string() });
                        if let Some(lp) = attributes.local_pref {
                            v["localPref"] = json!(lp);
                        }
                        if !attributes.communities.is_empty() {
                            v["communities"] = json!(attributes.communities);
                        }
                        v["services"] = json!(behind.get(prefix).cloned().unwrap_or_default());
                        v
                    })
                    .collect();
                json!({
                    "peer": s.peer.name,
                    "address": s.peer.endpoint.to_string(),
                    "vrf": s.peer.vrf.clone().unwrap_or_default(),
                    "prefixes": prefixes,
                })
            })
            .collect();
        let services: BTreeMap<String, Value> = intent
            .services
            .iter()
            .map(|(key, outcome)| {
                let v = match outcome {
                    ServiceBgp::Announced { prefixes, peers } => json!({
                        "announced": true,
                        "prefixes": prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "peers": &**peers,
                    }),
                    ServiceBgp::NotAnnounced(reason) => {
                        json!({ "announced": false, "reason": reason })
                    }
                };
                (key.to_string(), v)
            })
            .collect();
        let l2 = l2::announcements(
            &self.config,
            &L2Inputs {
                node: &self.node.name,
                members: &self.members,
                services: &self.services,
                endpoints: &self.endpoints,
                scope: &self.scope,
                ignore_exclude_label: false,
            },
        );
        let l2: Vec<Value> = l2
            .iter()
            .map(|a| {
                json!({
                    "service": a.service.to_string(),
                    "ips": a.ips,
                    "interfaces": a.interfaces,
                })
            })
            .collect();
        json!({
            "node": self.node.name,
            "bgp": { "sessions": sessions, "services": services },
            "l2": l2,
        })
    }
}

/// Test input: manifests read into objects (ferrolb in `metallb-system`) and the configuration
/// they load to; panics, showing the errors, when either fails.
#[cfg(test)]
pub(crate) fn fixture(text: &str) -> (ClusterObjects, Config) {
    let objects = crate::manifest::parse(text, "test", "metallb-system")
        .unwrap_or_else(|e| panic!("the manifests do not read: {e}\n{text}"))
        .objects;
    let config = crate::config::load(
        &objects,
        &crate::config::LoadOptions {
            namespace: "metallb-system".into(),
        },
    )
    .unwrap_or_else(|e| panic!("the configuration does not load: {e:?}\n{text}"));
    (objects, config)
}
