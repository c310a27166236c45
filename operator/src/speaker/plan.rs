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
use super::proxy::{ProbeRequest, ProxyGate};
use crate::api::{ConfigurationStateResult, ConfigurationStateStatus};
use crate::bgp::{IntentInputs, IntentState, ServiceBgp};
use crate::config::{self, ClusterObjects, Config, ConfigError, LoadOptions};
use crate::frr::commands::Word;
use crate::frr::{self, FrrConfig, NodeFacts};
use crate::l2::members::Liveness;
use crate::l2::{self, L2Announcement, L2Inputs};
use crate::shell::state::{keep_transition_times, load_condition};
use crate::views::{LbService, NodeView, ServiceKey, ServiceScope};

/// A change in what the node announces: one prefix, and the peers (BGPPeer names) that now
/// receive it and that no longer do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Announcement {
    /// The prefix.
    pub prefix: IpNet,
    /// Peers it is now announced to.
    pub to: Vec<String>,
    /// Peers it is withdrawn from.
    pub from: Vec<String>,
}

/// Per announced Service, the BGPPeers receiving it from this node.
pub(crate) type Statuses = BTreeMap<ServiceKey, super::status::Names>;

/// What one pass decided.
#[derive(Clone, Debug)]
pub(crate) struct Pass {
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
pub(crate) struct Planner {
    last_good: Option<Config>,
    services: SortedSet<ServiceKey, LbService>,
    endpoints: EndpointIndex,
    bgp: Option<Kept>,
    /// As of the last [`Planner::statuses`]; `behind` says what changed since.
    statuses: Arc<Statuses>,
    behind: StatusesBehind,
    built: Option<Built>,
    /// Local Services waiting for kube-proxy before this node announces them.
    gate: ProxyGate,
    /// How many times a load replaced `last_good` ([`Planner::loads`]).
    loads: u64,
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
            gate: ProxyGate::default(),
            loads: 0,
        }
    }
}

/// What a pass needs besides the objects.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PassInputs<'a> {
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
    /// A planner whose node announces a Local Service's new endpoints only once kube-proxy
    /// forwards to them ([`super::proxy`]): the probes to run come from
    /// [`Planner::take_probe_requests`], their ends go to [`Planner::release_probe`].
    pub(crate) fn waiting_for_proxy() -> Planner {
        Planner {
            gate: ProxyGate::enabled(),
            ..Planner::default()
        }
    }

    /// Starts from `config` (the last valid configuration this node ran, read back at
    /// start-up) as if it had loaded: it stands while the cluster's configuration is invalid
    /// and is replaced by the first that loads. False when a configuration had loaded.
    pub(crate) fn adopt(&mut self, config: Config) -> bool {
        if self.last_good.is_some() {
            return false;
        }
        self.last_good = Some(config);
        true
    }

    /// How many times a pass has loaded a configuration different from the one before: the
    /// speaker keeps the objects of each ([`super::saved`]).
    pub(crate) fn loads(&self) -> u64 {
        self.loads
    }

    /// The kube-proxy probes passes asked for since the last call.
    pub(crate) fn take_probe_requests(&mut self) -> Vec<ProbeRequest> {
        self.gate.take_requests()
    }

    /// A probe ended: the Service's announcement waits no more (the next pass decides it
    /// again); false when that wait was over already.
    pub(crate) fn release_probe(&mut self, key: &ServiceKey, id: u64) -> bool {
        self.gate.release(key, id)
    }

    /// Runs one pass over `objects` (configuration, Nodes, Namespaces, and all Services and
    /// EndpointSlices, as a fresh list); tests build their input this way.
    #[cfg(test)]
    pub(crate) fn pass(&mut self, objects: &ClusterObjects, inputs: &PassInputs<'_>) -> Pass {
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
                crate::views::slice_serving(slice).map(|part| (key, part))
            })),
        };
        self.pass_with(objects, taken, inputs)
    }

    /// Runs one pass: the configuration, Nodes and Namespaces from `objects` (its Services
    /// and EndpointSlices are not read), and the Services and endpoint objects that changed
    /// since the last pass from `taken`.
    pub(crate) fn pass_with(
        &mut self,
        objects: &ClusterObjects,
        taken: Taken,
        inputs: &PassInputs<'_>,
    ) -> Pass {
        let mut dirty = self.services.apply(taken.services);
        dirty.extend(self.endpoints.apply(taken.endpoints));
        dirty.extend(self.gate.take_released());
        let load = match config::load(objects, inputs.load) {
            Ok(config) => {
                if self.last_good.as_ref() != Some(&config) {
                    self.last_good = Some(config);
                    self.loads += 1;
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
        let same_input = self.bgp.as_ref().is_some_and(|kept| {
            kept.current
                && kept.node == node
                && kept.scope == *inputs.scope
                && kept.ignore_exclude_label == inputs.ignore_exclude_label
        });
        let local_ready =
            |key: &ServiceKey| endpoints.get(key).is_some_and(|e| e.on_node(&node.name));
        if same_input {
            for key in &dirty {
                match self.services.get(key) {
                    Some(service) => self.gate.observe(service, local_ready(key)),
                    None => self.gate.forget(key),
                }
            }
        } else {
            let table = &self.services;
            self.gate.retain(|key| table.get(key).is_some());
            for service in services {
                self.gate.observe(service, local_ready(&service.key));
            }
        }
        self.gate.pass_done();
        let held = self.gate.held();
        let intent_inputs = IntentInputs {
            node: &node,
            services,
            endpoints,
            scope: inputs.scope,
            ignore_exclude_label: inputs.ignore_exclude_label,
            held: &held,
        };
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
                let mut model = match frr::build(config, state.intent(), &node, inputs.facts) {
                    Ok(model) => model,
                    Err(error) => {
                        // The loader refuses such values first: FRR keeps what it runs.
                        tracing::error!(%error, "the configuration cannot be written for FRR");
                        return Pass {
                            model: None,
                            load,
                            stale,
                            changes,
                            l2,
                        };
                    }
                };
                // One of the levels the command line accepts.
                model.log_level = Word::of(inputs.frr_log_level);
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
    pub(crate) fn statuses(&mut self) -> Arc<Statuses> {
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
pub(crate) fn announcement_changes(
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
pub(crate) fn configuration_state(
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
mod tests;
