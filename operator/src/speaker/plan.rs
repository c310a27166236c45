//! One speaker pass, pure: cluster objects in, the node's FRR model, what changed on the wire,
//! the ServiceBGPStatus objects and the ConfigurationState out.
//!
//! A configuration that fails to load leaves the last valid one in force (and is reported);
//! until one loads, the speaker has no model and FRR is left alone. The node is read from its
//! Node object; a node without one has only its hostname label, like MetalLB's speaker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::cache::Taken;
use super::feed::{EndpointIndex, SortedSet};
use crate::api::{ConfigurationStateResult, ConfigurationStateStatus};
use crate::bgp::{IntentInputs, IntentState, ServiceBgp};
use crate::cluster::{LbService, NodeView, ServiceKey, ServiceScope};
use crate::config::{self, ClusterObjects, Config, ConfigError, LoadOptions};
use crate::frr::{self, FrrConfig, NodeFacts};
use crate::l2::members::Liveness;
use crate::l2::{self, L2Announcement, L2Inputs};
use crate::shell::state::{keep_transition_times, load_condition};

/// A change in what the node announces: one prefix, and the peers (BGPPeer names) that now
/// receive it and that no longer do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The prefix.
    pub prefix: IpNet,
    /// Peers it is now announced to.
    pub to: Vec<String>,
    /// Peers it is withdrawn from.
    pub from: Vec<String>,
}

/// Per announced Service, the BGPPeers receiving it from this node.
pub type Statuses = BTreeMap<ServiceKey, super::status::Names>;

/// What one pass decided.
#[derive(Clone, Debug)]
pub struct Pass {
    /// The model to apply; `None` while no configuration has ever loaded. The same `Arc` as
    /// the last pass's when nothing it is built from changed.
    pub model: Option<Arc<FrrConfig>>,
    /// The load's outcome (errors when the latest configuration is invalid).
    pub load: Result<(), Vec<ConfigError>>,
    /// Whether an older configuration is in force because the latest is invalid.
    pub stale: bool,
    /// Announcement changes since the previous pass.
    pub changes: Vec<Announcement>,
    /// The Services this node answers ARP/NDP for.
    pub l2: Vec<L2Announcement>,
}

/// The speaker's memory between passes: the only copy of the Services and of where their
/// endpoints serve (kept from the caches' changes), and the BGP intent, which a pass
/// updates for the Services that changed while the configuration and the node stay the
/// same, and computes anew otherwise.
#[derive(Debug)]
pub struct Planner {
    last_good: Option<Config>,
    services: SortedSet<ServiceKey, LbService>,
    endpoints: EndpointIndex,
    bgp: Option<Kept>,
    /// As of the last [`Planner::statuses`]; `behind` says what changed since.
    statuses: Arc<Statuses>,
    behind: StatusesBehind,
    built: Option<Built>,
}

/// What passes changed since the statuses were last brought up to date.
#[derive(Debug, Default)]
struct StatusesBehind {
    /// The intent was computed anew: every status.
    all: bool,
    /// Services decided again.
    services: BTreeSet<ServiceKey>,
}

/// The last model built, and what it was built from besides the kept intent's configuration
/// and node.
#[derive(Debug)]
struct Built {
    revision: u64,
    facts: NodeFacts,
    log_level: String,
    model: Arc<FrrConfig>,
}

/// The intent and what it was computed for.
#[derive(Debug)]
struct Kept {
    state: IntentState,
    /// Computed under the configuration in force.
    current: bool,
    node: NodeView,
    scope: ServiceScope,
    ignore_exclude_label: bool,
}

impl Default for Planner {
    fn default() -> Self {
        Planner {
            last_good: None,
            services: SortedSet::new(|s: &LbService| &s.key),
            endpoints: EndpointIndex::default(),
            bgp: None,
            statuses: Arc::default(),
            behind: StatusesBehind::default(),
            built: None,
        }
    }
}

/// What a pass needs besides the objects.
#[derive(Clone, Copy, Debug)]
pub struct PassInputs<'a> {
    /// This node's name.
    pub node: &'a str,
    /// The Services handled.
    pub scope: &'a ServiceScope,
    /// Load options (ferrolb's namespace).
    pub load: &'a LoadOptions,
    /// Kernel facts FRR prints.
    pub facts: NodeFacts,
    /// Announce from nodes labelled for exclusion anyway.
    pub ignore_exclude_label: bool,
    /// Which speakers gossip holds alive.
    pub liveness: &'a Liveness,
    /// FRR's `log stdout` level.
    pub frr_log_level: &'a str,
}

impl Planner {
    /// Runs one pass over `objects` (configuration, Nodes, Namespaces, and all Services and
    /// EndpointSlices, as a fresh list); tests build their input this way.
    #[cfg(test)]
    pub fn pass(&mut self, objects: &ClusterObjects, inputs: &PassInputs<'_>) -> Pass {
        use super::feed::Pending;
        use kube::Resource as _;
        let taken = Taken {
            services: Pending::listed(
                objects
                    .services
                    .iter()
                    .map(|s| (ServiceKey::of(s), LbService::from_service(s))),
            ),
            endpoints: Pending::listed(objects.endpoint_slices.iter().filter_map(|slice| {
                let meta = slice.meta();
                let key = ServiceKey::new(
                    meta.namespace.as_deref().unwrap_or("default"),
                    meta.name.as_deref().unwrap_or_default(),
                );
                crate::cluster::slice_serving(slice).map(|part| (key, part))
            })),
        };
        self.pass_with(objects, taken, inputs)
    }

    /// Runs one pass: the configuration, Nodes and Namespaces from `objects` (its Services
    /// and EndpointSlices are not read), and the Services and endpoint objects that changed
    /// since the last pass from `taken`.
    pub fn pass_with(
        &mut self,
        objects: &ClusterObjects,
        taken: Taken,
        inputs: &PassInputs<'_>,
    ) -> Pass {
        let mut dirty = self.services.apply(taken.services);
        dirty.extend(self.endpoints.apply(taken.endpoints));
        let load = match config::load(objects, inputs.load) {
            Ok(config) => {
                if self.last_good.as_ref() != Some(&config) {
                    self.last_good = Some(config);
                    // Every Service is decided anew under a new configuration.
                    if let Some(kept) = &mut self.bgp {
                        kept.current = false;
                    }
                }
                Ok(())
            }
            Err(errors) => Err(errors),
        };
        let stale = load.is_err() && self.last_good.is_some();
        let Some(config) = &self.last_good else {
            return Pass {
                model: None,
                load,
                stale,
                changes: Vec::new(),
                l2: Vec::new(),
            };
        };
        let mut nodes: Vec<NodeView> = objects.nodes.iter().map(NodeView::from_node).collect();
        if !nodes.iter().any(|n| n.name == inputs.node) {
            nodes.push(NodeView::named(inputs.node));
        }
        let node = nodes
            .iter()
            .find(|n| n.name == inputs.node)
            .cloned()
            .unwrap_or_else(|| NodeView::named(inputs.node));
        let services = self.services.as_slice();
        let endpoints = self.endpoints.by_service();
        let l2 = match l2::live_members(&nodes, inputs.liveness) {
            Some(members) => l2::announcements(
                config,
                &L2Inputs {
                    node: inputs.node,
                    members: &members,
                    services,
                    endpoints,
                    scope: inputs.scope,
                    ignore_exclude_label: inputs.ignore_exclude_label,
                },
            ),
            None => Vec::new(),
        };
        let intent_inputs = IntentInputs {
            node: &node,
            services,
            endpoints,
            scope: inputs.scope,
            ignore_exclude_label: inputs.ignore_exclude_label,
        };
        let same_input = self.bgp.as_ref().is_some_and(|kept| {
            kept.current
                && kept.node == node
                && kept.scope == *inputs.scope
                && kept.ignore_exclude_label == inputs.ignore_exclude_label
        });
        let changes = match &mut self.bgp {
            Some(kept) if same_input => {
                let table = &self.services;
                let changed = kept
                    .state
                    .update(config, &intent_inputs, &dirty, |key| table.get(key));
                if !self.behind.all {
                    self.behind.services.extend(dirty);
                }
                changed
                    .into_iter()
                    .map(|c| Announcement {
                        prefix: c.prefix,
                        to: c.after.difference(&c.before).cloned().collect(),
                        from: c.before.difference(&c.after).cloned().collect(),
                    })
                    .collect()
            }
            _ => {
                let state = IntentState::new(config, &intent_inputs);
                let before = self
                    .bgp
                    .as_ref()
                    .map(|kept| kept.state.intent().receivers())
                    .unwrap_or_default();
                let changes = announcement_changes(&before, &state.intent().receivers());
                self.behind = StatusesBehind {
                    all: true,
                    services: BTreeSet::new(),
                };
                self.built = None;
                self.bgp = Some(Kept {
                    state,
                    current: true,
                    node: node.clone(),
                    scope: inputs.scope.clone(),
                    ignore_exclude_label: inputs.ignore_exclude_label,
                });
                changes
            }
        };
        let state = &self.bgp.as_ref().expect("kept above").state;
        // A Service that changed nothing announced (created without an IP yet, endpoints
        // moved between nodes that both announce) builds nothing.
        let model = match &self.built {
            Some(built)
                if built.revision == state.revision()
                    && built.facts == inputs.facts
                    && built.log_level == inputs.frr_log_level =>
            {
                Arc::clone(&built.model)
            }
            _ => {
                let mut model = frr::build(config, state.intent(), &node, inputs.facts);
                model.log_level = inputs.frr_log_level.to_string();
                let model = Arc::new(model);
                self.built = Some(Built {
                    revision: state.revision(),
                    facts: inputs.facts,
                    log_level: inputs.frr_log_level.to_string(),
                    model: Arc::clone(&model),
                });
                model
            }
        };
        Pass {
            model: Some(model),
            load,
            stale,
            changes,
            l2,
        }
    }

    /// Per announced Service, the BGPPeers receiving it from this node, as of the last pass.
    /// Kept apart from the pass so that it is worked out after FRR has its change: the map
    /// is shared with the status writer, and a pass that changes a status copies it. A pass
    /// that changes none returns the same `Arc`.
    pub fn statuses(&mut self) -> Arc<Statuses> {
        let behind = std::mem::take(&mut self.behind);
        let Some(kept) = &self.bgp else {
            return Arc::clone(&self.statuses);
        };
        let services = &kept.state.intent().services;
        if behind.all {
            let statuses: Statuses = services
                .iter()
                .filter_map(|(key, outcome)| Some((key.clone(), announced_to(outcome)?.clone())))
                .collect();
            if *self.statuses != statuses {
                self.statuses = Arc::new(statuses);
            }
        } else {
            for key in &behind.services {
                let wanted = services.get(key).and_then(announced_to);
                if self.statuses.get(key) == wanted {
                    continue;
                }
                let statuses = Arc::make_mut(&mut self.statuses);
                match wanted {
                    Some(peers) => statuses.insert(key.clone(), peers.clone()),
                    None => statuses.remove(key),
                };
            }
        }
        Arc::clone(&self.statuses)
    }
}

/// The peers an announced Service goes to, when it goes to any.
fn announced_to(outcome: &ServiceBgp) -> Option<&super::status::Names> {
    match outcome {
        ServiceBgp::Announced { peers, .. } if !peers.is_empty() => Some(peers),
        _ => None,
    }
}

/// The prefixes whose receivers changed between two announcement maps, in prefix order.
pub fn announcement_changes(
    before: &BTreeMap<IpNet, BTreeSet<String>>,
    after: &BTreeMap<IpNet, BTreeSet<String>>,
) -> Vec<Announcement> {
    // One walk over both sorted maps: equal entries (nearly all of them) cost a comparison.
    let empty = BTreeSet::new();
    let mut out = Vec::new();
    let mut change = |prefix: &IpNet, was: &BTreeSet<String>, is: &BTreeSet<String>| {
        if was == is {
            return;
        }
        out.push(Announcement {
            prefix: *prefix,
            to: is.difference(was).cloned().collect(),
            from: was.difference(is).cloned().collect(),
        });
    };
    let (mut old, mut new) = (before.iter().peekable(), after.iter().peekable());
    loop {
        match (old.peek(), new.peek()) {
            (Some((p, was)), Some((q, is))) => match p.cmp(q) {
                std::cmp::Ordering::Less => {
                    change(p, was, &empty);
                    old.next();
                }
                std::cmp::Ordering::Greater => {
                    change(q, &empty, is);
                    new.next();
                }
                std::cmp::Ordering::Equal => {
                    change(p, was, is);
                    old.next();
                    new.next();
                }
            },
            (Some((p, was)), None) => {
                change(p, was, &empty);
                old.next();
            }
            (None, Some((q, is))) => {
                change(q, &empty, is);
                new.next();
            }
            (None, None) => break,
        }
    }
    out
}

/// The `speaker-<node>` ConfigurationState: condition `configReconcilerValid` from the load,
/// and `frrConfigApplied` from the last apply (`None` before the first). Transition times
/// are kept while a condition's status does not change.
pub fn configuration_state(
    load: &Result<(), Vec<ConfigError>>,
    applied: Option<&Result<String, String>>,
    previous: Option<&ConfigurationStateStatus>,
    now: &Time,
) -> ConfigurationStateStatus {
    let mut conditions = vec![load_condition(
        "configReconcilerValid",
        load,
        "\n(the last valid configuration stays in force)",
        now,
    )];
    if let Some(applied) = applied {
        let (status, reason, message) = match applied {
            Ok(how) => ("True", "Applied", how.clone()),
            Err(error) => ("False", "ApplyFailed", error.clone()),
        };
        conditions.push(Condition {
            type_: "frrConfigApplied".to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: now.clone(),
            observed_generation: None,
        });
    }
    keep_transition_times(&mut conditions, previous);
    let errors: Vec<String> = conditions
        .iter()
        .filter(|c| c.status == "False")
        .map(|c| c.message.clone())
        .collect();
    ConfigurationStateStatus {
        result: Some(if errors.is_empty() {
            ConfigurationStateResult::Valid
        } else {
            ConfigurationStateResult::Invalid
        }),
        error_summary: (!errors.is_empty()).then(|| errors.join("\n")),
        conditions: Some(conditions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;

    const CONFIG: &str = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: web}
spec: {addresses: [198.51.100.0/24]}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: all}
spec: {ipAddressPools: [web]}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor1}
spec: {myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.1}
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: shop}
spec: {type: LoadBalancer, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 198.51.100.7}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: a-1, namespace: shop, labels: {kubernetes.io/service-name: a}}
addressType: IPv4
endpoints: [{addresses: [10.244.0.5], nodeName: node-a}]
"#;

    fn objects(text: &str) -> ClusterObjects {
        manifest::parse(text, "test", "metallb-system")
            .unwrap()
            .objects
    }

    fn inputs<'a>(scope: &'a ServiceScope, load: &'a LoadOptions) -> PassInputs<'a> {
        static ALONE: std::sync::LazyLock<Liveness> = std::sync::LazyLock::new(|| Liveness {
            alive: BTreeSet::from(["node-a".to_string()]),
            settled: true,
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
        let config = CONFIG.replace("kind: BGPAdvertisement", "kind: L2Advertisement");
        let (scope, load) = (ServiceScope::default(), LoadOptions::default());
        let mut planner = Planner::default();
        let pass = planner.pass(&objects(&config), &inputs(&scope, &load));
        assert_eq!(pass.l2.len(), 1);
        assert_eq!(pass.l2[0].service, ServiceKey::new("shop", "a"));
        assert!(planner.statuses().is_empty(), "no BGP advertisement");

        let unsettled = Liveness {
            alive: BTreeSet::from(["node-a".to_string()]),
            settled: false,
        };
        let pass = planner.pass(
            &objects(&config),
            &PassInputs {
                liveness: &unsettled,
                ..inputs(&scope, &load)
            },
        );
        assert!(pass.l2.is_empty());

        // With node-b alive too, exactly one of the two claims the IP.
        let both = Liveness {
            alive: BTreeSet::from(["node-a".to_string(), "node-b".to_string()]),
            settled: true,
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

    #[test]
    fn a_pass_announces_and_reports_what_changed() {
        let (scope, load) = (ServiceScope::default(), LoadOptions::default());
        let mut planner = Planner::default();
        let pass = planner.pass(&objects(CONFIG), &inputs(&scope, &load));
        assert!(pass.model.is_some() && pass.load.is_ok() && !pass.stale);
        assert_eq!(
            pass.changes,
            [Announcement {
                prefix: "198.51.100.7/32".parse().unwrap(),
                to: vec!["tor1".into()],
                from: vec![],
            }]
        );
        assert_eq!(
            planner.statuses()[&ServiceKey::new("shop", "a")],
            BTreeSet::from(["tor1".to_string()]).into()
        );
        let again = planner.pass(&objects(CONFIG), &inputs(&scope, &load));
        assert!(again.changes.is_empty());
    }

    #[test]
    fn a_pass_that_changes_nothing_announced_reuses_the_model_and_the_statuses() {
        let (scope, load) = (ServiceScope::default(), LoadOptions::default());
        let mut planner = Planner::default();
        let first = planner.pass(&objects(CONFIG), &inputs(&scope, &load));
        let first_statuses = planner.statuses();
        let waiting = "---\napiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: shop}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n";
        let with_b = format!("{CONFIG}{waiting}");
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
        let broken = CONFIG.replace("198.51.100.0/24", "198.51.100.0/99");
        let first = planner.pass(&objects(&broken), &inputs(&scope, &load));
        assert!(first.model.is_none() && first.load.is_err() && !first.stale);
        let good = planner.pass(&objects(CONFIG), &inputs(&scope, &load));
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
}
