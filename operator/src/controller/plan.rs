//! What the controller writes, decided without the API: from the live Services and the
//! configuration in force, the Service status and annotation patches, the Events, the
//! IPAddressPool statuses and the `controller` ConfigurationState.
//!
//! The first pass of a term, and every pass after the pools change, allocates over every
//! Service from nothing (the same [`alloc::allocate_all`] the `allocate` command runs). The
//! passes in between keep that allocator and re-decide only the Services that changed (a new
//! resourceVersion), that were written last time, or that were deleted, then give freed IPs to
//! Services still waiting, as `allocate_all` does: one new Service among 10,000 costs its own
//! decision, not 10,000. [`plan`] finds the changed ones by looking at every Service;
//! [`plan_changed`] is told them (by the watch) and looks at nothing else. Either way a plan
//! is idempotent: applied to its own result it asks for no writes, and its result is what a
//! fresh start would keep. Events that describe a state
//! rather than a change (`AllocationFailed`, `LoadBalancerFailed`) are recorded once per
//! distinct reason, not on every pass; [`EventMemory`] remembers what was said.

use crate::shell::state::{keep_transition_times, load_condition, summary};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use crate::alloc::{self, AllocService, Event, POOL_ANNOTATION, PoolUsage};
use crate::api::{ConfigurationStateResult, ConfigurationStateStatus, IPAddressPoolStatus};
use crate::config::{Config, ConfigError};
use crate::views::{KeyRef, ServiceKey, ServiceScope, key_parts};

/// The writes for one Service.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ServiceWrite {
    /// The Service.
    pub key: ServiceKey,
    /// JSON merge patch for the `status` subresource, when the ingress must change.
    pub status: Option<Value>,
    /// JSON merge patch for the object, when the pool annotation must change.
    pub metadata: Option<Value>,
}

/// Everything the controller should write after one pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Plan {
    /// Services whose status or annotation differ from the decision, by key.
    pub writes: Vec<ServiceWrite>,
    /// Events to record, per Service.
    pub events: Vec<(ServiceKey, Event)>,
    /// Status per IPAddressPool.
    pub pools: BTreeMap<String, IPAddressPoolStatus>,
    /// Usage per pool, for the metrics.
    pub usage: BTreeMap<String, PoolUsage>,
    /// Services assigned and pending, for logs and metrics.
    pub assigned: usize,
    /// Services left without IPs.
    pub pending: usize,
}

/// What the controller remembers between passes: the reasons already reported per Service
/// (so a state is reported once, not every pass) and the allocation it keeps.
#[derive(Clone, Debug, Default)]
pub(crate) struct EventMemory {
    said: HashMap<ServiceKey, Vec<String>>,
    kept: Option<Kept>,
}

impl EventMemory {
    /// The Services the next [`plan_changed`] looks at besides the changed ones: those the
    /// last plan wrote.
    pub(crate) fn rechecks(&self) -> &[ServiceKey] {
        self.kept.as_ref().map_or(&[], |k| k.recheck.as_slice())
    }
}

/// The allocation kept between passes while the pools stay as they are.
#[derive(Clone, Debug)]
struct Kept {
    /// The pools it was made for.
    pools: String,
    allocator: alloc::Allocator,
    decisions: HashMap<ServiceKey, alloc::Decision>,
    /// Services that needed no write at the resourceVersion recorded: nothing to redo while
    /// it stays.
    settled: HashMap<ServiceKey, Option<String>>,
    /// Services another instance handles (or not LoadBalancers): counted neither assigned
    /// nor pending.
    foreign: std::collections::HashSet<ServiceKey>,
    /// Services written by the last plan: looked at again by the next (the write may fail,
    /// and then no watch event says so).
    recheck: Vec<ServiceKey>,
    /// Services in scope with IPs, and without: kept up to date by [`update`], so a pass
    /// that changes one Service counts one.
    assigned: usize,
    pending: usize,
}

impl Kept {
    /// What `key` adds to (assigned, pending).
    fn tally(&self, key: &ServiceKey) -> (usize, usize) {
        if self.foreign.contains(key) {
            return (0, 0);
        }
        match self.decisions.get(key) {
            None => (0, 0),
            Some(d) if d.ingress.is_empty() => (0, 1),
            Some(_) => (1, 0),
        }
    }

    /// Takes `key` out of the counts before its decision changes, once per update (`counted`
    /// holds the keys taken out, put back by [`Kept::recount`]).
    fn uncount(&mut self, key: &ServiceKey, counted: &mut BTreeSet<ServiceKey>) {
        if counted.insert(key.clone()) {
            let (assigned, pending) = self.tally(key);
            self.assigned -= assigned;
            self.pending -= pending;
        }
    }

    /// Adds `keys` to the counts.
    fn recount<'k>(&mut self, keys: impl IntoIterator<Item = &'k ServiceKey>) {
        for key in keys {
            let (assigned, pending) = self.tally(key);
            self.assigned += assigned;
            self.pending += pending;
        }
    }
}

fn live_pool(service: &Service) -> Option<&str> {
    service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POOL_ANNOTATION))
        .map(String::as_str)
}

/// The merge patch that sets `status.loadBalancer.ingress` to `ips`, each with `ipMode: VIP`
/// (removes it when empty).
pub(crate) fn status_patch(ips: &[IpAddr]) -> Value {
    if ips.is_empty() {
        return json!({ "status": { "loadBalancer": { "ingress": null } } });
    }
    let ingress: Vec<Value> = ips
        .iter()
        .map(|ip| json!({ "ip": ip.to_string(), "ipMode": crate::views::IP_MODE }))
        .collect();
    json!({ "status": { "loadBalancer": { "ingress": ingress } } })
}

/// The merge patch that sets (or, with `None`, removes) the pool annotation.
pub(crate) fn annotation_patch(pool: Option<&str>) -> Value {
    json!({ "metadata": { "annotations": { POOL_ANNOTATION: pool } } })
}

fn capped(n: u128) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An IPAddressPool's status from its usage.
pub(crate) fn pool_status(usage: &PoolUsage) -> IPAddressPoolStatus {
    IPAddressPoolStatus {
        assigned_ipv4: capped(usage.assigned_ipv4),
        assigned_ipv6: capped(usage.assigned_ipv6),
        available_ipv4: capped(usage.available_ipv4),
        available_ipv6: capped(usage.available_ipv6),
    }
}

/// Plans one pass over every Service with the configuration in force.
pub(crate) fn plan<S: std::borrow::Borrow<Service>>(
    config: &Config,
    services: &[S],
    scope: &ServiceScope,
    memory: &mut EventMemory,
) -> Plan {
    let pools = format!("{:?}", config.pools);
    let kept = memory.kept.take().filter(|k| k.pools == pools);
    let mut out = Plan::default();
    let kept = match kept {
        Some(kept) => incremental(kept, services, scope, memory, &mut out),
        None => cold(config, pools, services, scope, memory, &mut out),
    };
    finish(kept, memory, out)
}

/// Plans one pass that looks only at the Services `changed` (sorted, each once; `find` gives
/// each as the cache holds it now, `None` when deleted) and those written by the last pass,
/// with the allocation kept from earlier passes. `None` when there is none to keep (the first
/// pass, or the pools changed): then [`plan`] must look at every Service.
pub(crate) fn plan_changed<S: std::borrow::Borrow<Service>>(
    config: &Config,
    changed: Vec<ServiceKey>,
    find: impl Fn(&ServiceKey) -> Option<S>,
    scope: &ServiceScope,
    memory: &mut EventMemory,
) -> Option<Plan> {
    let pools = format!("{:?}", config.pools);
    if memory.kept.as_ref().is_none_or(|k| k.pools != pools) {
        return None;
    }
    let mut kept = memory.kept.take()?;
    let mut keys = changed;
    keys.append(&mut kept.recheck);
    keys.sort_unstable();
    keys.dedup();
    let mut out = Plan::default();
    let kept = update(kept, keys, &find, scope, memory, &mut out);
    Some(finish(kept, memory, out))
}

/// Totals and pool statuses of `kept`, which becomes the allocation kept.
fn finish(mut kept: Kept, memory: &mut EventMemory, mut out: Plan) -> Plan {
    out.usage = kept.allocator.usage();
    out.pools = out
        .usage
        .iter()
        .map(|(name, u)| (name.clone(), pool_status(u)))
        .collect();
    out.assigned = kept.assigned;
    out.pending = kept.pending;
    // A Service written this pass is looked at again next pass (its write may fail).
    for write in &out.writes {
        kept.settled.remove(&write.key);
    }
    kept.recheck = out.writes.iter().map(|w| w.key.clone()).collect();
    memory.kept = Some(kept);
    out
}

/// Allocation over every Service from nothing.
fn cold<S: std::borrow::Borrow<Service>>(
    config: &Config,
    pools: String,
    services: &[S],
    scope: &ServiceScope,
    memory: &mut EventMemory,
    out: &mut Plan,
) -> Kept {
    let views: Vec<AllocService> = services
        .iter()
        .map(|s| AllocService::from_service(s.borrow()))
        .collect();
    let (allocator, decisions) = alloc::allocate_all(config, &views, scope);
    let mut settled = HashMap::new();
    for (service, view) in services.iter().zip(&views) {
        let service: &Service = service.borrow();
        let Some(decision) = decisions.get(&view.key) else {
            continue;
        };
        outcome(service, view, decision, scope, memory, out);
        settled.insert(view.key.clone(), service.metadata.resource_version.clone());
    }
    // Deleted Services are forgotten.
    memory.said.retain(|k, _| decisions.contains_key(k));
    let mut kept = Kept {
        pools,
        allocator,
        decisions: decisions.into_iter().collect(),
        settled,
        foreign: views
            .iter()
            .filter(|v| !v.in_scope(scope))
            .map(|v| v.key.clone())
            .collect(),
        recheck: Vec::new(),
        assigned: 0,
        pending: 0,
    };
    kept.recount(views.iter().map(|v| &v.key));
    kept
}

/// The kept allocation brought up to date with every Service in `services`: the changed ones
/// (a resourceVersion not settled, or deleted) are found by looking at each, then [`update`]d.
fn incremental<S: std::borrow::Borrow<Service>>(
    kept: Kept,
    services: &[S],
    scope: &ServiceScope,
    memory: &mut EventMemory,
    out: &mut Plan,
) -> Kept {
    // Borrowed keys: nothing is allocated per Service to find the few that changed.
    let index: HashMap<(&str, &str), usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (key_parts(s.borrow()), i))
        .collect();
    let mut changed: Vec<ServiceKey> = kept
        .decisions
        .keys()
        .filter(|k| !index.contains_key(&k.parts()))
        .cloned()
        .collect();
    changed.extend(
        index
            .iter()
            .filter(|(key, i)| {
                let version = &services[**i].borrow().metadata.resource_version;
                kept.settled.get(*key as &dyn KeyRef) != Some(version) || version.is_none()
            })
            .map(|((namespace, name), _)| ServiceKey::new(namespace, name)),
    );
    changed.sort_unstable();
    let find = |key: &ServiceKey| index.get(&key.parts()).map(|i| services[*i].borrow());
    update(kept, changed, &find, scope, memory, out)
}

/// The kept allocation brought up to date for the Services `keys` (sorted, each once):
/// deleted ones release their IPs, the others whose resourceVersion is not settled are
/// decided again ([`alloc::holders_first`]), then, when that freed IPs, Services still waiting
/// try again ([`alloc::serve_waiting`]). Outcomes go out in key order.
fn update<S: std::borrow::Borrow<Service>>(
    mut kept: Kept,
    keys: Vec<ServiceKey>,
    find: &impl Fn(&ServiceKey) -> Option<S>,
    scope: &ServiceScope,
    memory: &mut EventMemory,
    out: &mut Plan,
) -> Kept {
    let mut freed = false;
    let mut counted = BTreeSet::new();
    let mut todo: Vec<(S, AllocService)> = Vec::new();
    for key in keys {
        let Some(service) = find(&key) else {
            kept.uncount(&key, &mut counted);
            freed |= kept.allocator.release(&key);
            kept.decisions.remove(&key);
            kept.settled.remove(&key);
            kept.foreign.remove(&key);
            memory.said.remove(&key);
            continue;
        };
        let version = &service.borrow().metadata.resource_version;
        if version.is_some() && kept.settled.get(&key) == Some(version) {
            continue;
        }
        let view = AllocService::from_service(service.borrow());
        todo.push((service, view));
    }
    todo.sort_by(|(_, a), (_, b)| alloc::holders_first(a, b));
    let mut touched: BTreeMap<ServiceKey, (S, AllocService)> = BTreeMap::new();
    for (service, view) in todo {
        let held = kept.allocator.release(&view.key);
        let decision = kept.allocator.converge(&view, scope);
        let kept_ips = kept
            .decisions
            .get(&view.key)
            .is_some_and(|d| d.ingress == decision.ingress);
        freed |= held && !kept_ips;
        kept.uncount(&view.key, &mut counted);
        kept.decisions.insert(view.key.clone(), decision);
        touched.insert(view.key.clone(), (service, view));
    }
    if freed {
        // Every Service waiting may get IPs now, and is then written.
        for key in alloc::Decisions::waiting(&kept.decisions) {
            if !touched.contains_key(&key) {
                let Some(service) = find(&key) else {
                    continue;
                };
                let view = AllocService::from_service(service.borrow());
                touched.insert(key.clone(), (service, view));
            }
            kept.uncount(&key, &mut counted);
        }
        alloc::serve_waiting(&mut kept.allocator, &mut kept.decisions, scope, |key| {
            touched.get(key).map(|(_, view)| view)
        });
    }
    for (_, (service, view)) in touched {
        let service: &Service = service.borrow();
        let Some(decision) = kept.decisions.get(&view.key) else {
            continue;
        };
        outcome(service, &view, decision, scope, memory, out);
        kept.settled
            .insert(view.key.clone(), service.metadata.resource_version.clone());
        if view.in_scope(scope) {
            kept.foreign.remove(&view.key);
        } else {
            kept.foreign.insert(view.key.clone());
        }
    }
    kept.recount(&counted);
    kept
}

/// The writes and events for one Service given its decision.
fn outcome(
    service: &Service,
    view: &AllocService,
    decision: &alloc::Decision,
    scope: &ServiceScope,
    memory: &mut EventMemory,
    out: &mut Plan,
) {
    if !view.in_scope(scope) {
        // Another class, or no longer a LoadBalancer: clear only what we wrote.
        if !view.is_load_balancer && live_pool(service).is_some() {
            out.writes.push(ServiceWrite {
                key: view.key.clone(),
                status: (!view.ingress.is_empty()).then(|| status_patch(&[])),
                metadata: Some(annotation_patch(None)),
            });
        }
        memory.said.remove(&view.key);
        return;
    }
    let wanted_pool = decision
        .pool
        .as_deref()
        .filter(|_| !decision.ingress.is_empty());
    // An IP written without its ipMode (by an older release, or by MetalLB) is written again.
    let status = (view.ingress != decision.ingress
        || !crate::views::ingress_ip_mode_is_vip(service))
    .then(|| status_patch(&decision.ingress));
    let metadata = (live_pool(service) != wanted_pool).then(|| annotation_patch(wanted_pool));
    let changed = status.is_some() || metadata.is_some();
    if changed {
        out.writes.push(ServiceWrite {
            key: view.key.clone(),
            status,
            metadata,
        });
    }
    // Events: every one on a change; otherwise only reasons not said before.
    let said = memory.said.entry(view.key.clone()).or_default();
    let now: Vec<String> = decision
        .events
        .iter()
        .map(|e| format!("{}: {}", e.reason, e.message))
        .collect();
    for (event, text) in decision.events.iter().zip(&now) {
        if changed || !said.contains(text) {
            out.events.push((view.key.clone(), event.clone()));
        }
    }
    if changed && !view.deprecated_annotations.is_empty() {
        out.events.push((
            view.key.clone(),
            Event {
                type_: "Warning",
                reason: "deprecatedAnnotation",
                message: format!(
                    "Service uses deprecated annotation(s) {}; use the metallb.io/ prefix",
                    view.deprecated_annotations.join(", ")
                ),
            },
        ));
    }
    *said = now;
}

/// The `controller` ConfigurationState status, from two loads made at `now`: `pools`, what
/// allocation reads (IPAddressPools and Namespaces; condition `poolReconcilerValid`, as
/// MetalLB's controller), and `all`, every configuration kind (condition
/// `configReconcilerValid`, so errors show without waiting for a speaker). The result is
/// Invalid when either is. A condition whose status is unchanged from `previous` keeps its
/// transition time.
pub(crate) fn configuration_state(
    pools: &Result<(), Vec<ConfigError>>,
    all: &Result<(), Vec<ConfigError>>,
    previous: Option<&ConfigurationStateStatus>,
    now: &Time,
) -> ConfigurationStateStatus {
    let mut conditions = vec![
        load_condition(
            "poolReconcilerValid",
            pools,
            "\n(IP allocation goes on with the last valid pools)",
            now,
        ),
        load_condition("configReconcilerValid", all, "", now),
    ];
    keep_transition_times(&mut conditions, previous);
    let error_summary = match (all, pools) {
        (Err(errors), _) | (Ok(()), Err(errors)) => Some(summary(errors)),
        (Ok(()), Ok(())) => None,
    };
    ConfigurationStateStatus {
        result: Some(if error_summary.is_some() {
            ConfigurationStateResult::Invalid
        } else {
            ConfigurationStateResult::Valid
        }),
        error_summary,
        conditions: Some(conditions),
    }
}

#[cfg(test)]
mod tests;
