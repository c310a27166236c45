//! What the controller writes, decided without the API: from the live Services and the
//! configuration in force, the Service status and annotation patches, the Events, the
//! IPAddressPool statuses and the `controller` ConfigurationState.
//!
//! The controller recomputes allocation over every Service on each change (the same
//! [`alloc::allocate_all`] the `allocate` command runs), so a plan is idempotent: applied to
//! its own result it asks for no writes. Events that describe a state rather than a change
//! (`AllocationFailed`, `LoadBalancerFailed`) are recorded once per distinct reason, not on
//! every pass; [`EventMemory`] remembers what was said.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};

use crate::alloc::{self, AllocService, Event, POOL_ANNOTATION, PoolUsage};
use crate::api::{ConfigurationStateResult, ConfigurationStateStatus, IPAddressPoolStatus};
use crate::cluster::{ServiceKey, ServiceScope};
use crate::config::{Config, ConfigError};

/// The writes for one Service.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceWrite {
    /// The Service.
    pub key: ServiceKey,
    /// JSON merge patch for the `status` subresource, when the ingress must change.
    pub status: Option<Value>,
    /// JSON merge patch for the object, when the pool annotation must change.
    pub metadata: Option<Value>,
}

/// Everything the controller should write after one pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
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

/// The reasons already reported per Service, so a state is reported once, not every pass.
#[derive(Clone, Debug, Default)]
pub struct EventMemory {
    said: HashMap<ServiceKey, Vec<String>>,
}

fn live_pool(service: &Service) -> Option<&str> {
    service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POOL_ANNOTATION))
        .map(String::as_str)
}

/// The merge patch that sets `status.loadBalancer.ingress` to `ips` (removes it when empty).
pub fn status_patch(ips: &[IpAddr]) -> Value {
    if ips.is_empty() {
        return json!({ "status": { "loadBalancer": { "ingress": null } } });
    }
    let ingress: Vec<Value> = ips
        .iter()
        .map(|ip| json!({ "ip": ip.to_string() }))
        .collect();
    json!({ "status": { "loadBalancer": { "ingress": ingress } } })
}

/// The merge patch that sets (or, with `None`, removes) the pool annotation.
pub fn annotation_patch(pool: Option<&str>) -> Value {
    json!({ "metadata": { "annotations": { POOL_ANNOTATION: pool } } })
}

fn capped(n: u128) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An IPAddressPool's status from its usage.
pub fn pool_status(usage: &PoolUsage) -> IPAddressPoolStatus {
    IPAddressPoolStatus {
        assigned_ipv4: capped(usage.assigned_ipv4),
        assigned_ipv6: capped(usage.assigned_ipv6),
        available_ipv4: capped(usage.available_ipv4),
        available_ipv6: capped(usage.available_ipv6),
    }
}

/// Plans one pass over every Service with the configuration in force.
pub fn plan<S: std::borrow::Borrow<Service>>(
    config: &Config,
    services: &[S],
    scope: &ServiceScope,
    memory: &mut EventMemory,
) -> Plan {
    let views: Vec<AllocService> = services
        .iter()
        .map(|s| AllocService::from_service(s.borrow()))
        .collect();
    let (allocator, decisions) = alloc::allocate_all(config, &views, scope);
    let mut out = Plan {
        usage: allocator.usage(),
        ..Plan::default()
    };
    out.pools = out
        .usage
        .iter()
        .map(|(name, u)| (name.clone(), pool_status(u)))
        .collect();
    for (service, view) in services.iter().zip(&views) {
        let service: &Service = service.borrow();
        let Some(decision) = decisions.get(&view.key) else {
            continue;
        };
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
            continue;
        }
        if decision.ingress.is_empty() {
            out.pending += 1;
        } else {
            out.assigned += 1;
        }
        let wanted_pool = decision
            .pool
            .as_deref()
            .filter(|_| !decision.ingress.is_empty());
        let status = (view.ingress != decision.ingress).then(|| status_patch(&decision.ingress));
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
    // Deleted Services are forgotten.
    memory.said.retain(|k, _| decisions.contains_key(k));
    out
}

/// The condition a ConfigurationState carries for one load.
/// Gives each condition whose status is unchanged from `previous` its old transition time.
pub(crate) fn keep_transition_times(
    conditions: &mut [Condition],
    previous: Option<&ConfigurationStateStatus>,
) {
    let before = previous
        .and_then(|p| p.conditions.as_deref())
        .unwrap_or(&[]);
    for condition in conditions {
        if let Some(old) = before
            .iter()
            .find(|o| o.type_ == condition.type_ && o.status == condition.status)
        {
            condition.last_transition_time = old.last_transition_time.clone();
        }
    }
}

pub(crate) fn load_condition(
    type_: &str,
    load: &Result<(), Vec<ConfigError>>,
    invalid_suffix: &str,
    now: &Time,
) -> Condition {
    let (status, reason, message) = match load {
        Ok(()) => (
            "True",
            "Reconciled",
            "the configuration is valid".to_string(),
        ),
        Err(errors) => (
            "False",
            "ConfigurationError",
            format!("{}{invalid_suffix}", summary(errors)),
        ),
    };
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        last_transition_time: now.clone(),
        observed_generation: None,
    }
}

fn summary(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `controller` ConfigurationState status, from two loads made at `now`: `pools`, what
/// allocation reads (IPAddressPools and Namespaces; condition `poolReconcilerValid`, as
/// MetalLB's controller), and `all`, every configuration kind (condition
/// `configReconcilerValid`, so errors show without waiting for a speaker). The result is
/// Invalid when either is. A condition whose status is unchanged from `previous` keeps its
/// transition time.
pub fn configuration_state(
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
mod tests {
    use super::*;
    use crate::config::{self, LoadOptions};

    const INPUT: &str = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: prod}
spec: {addresses: [10.0.0.0/31]}
---
apiVersion: v1
kind: Service
metadata: {name: kept, namespace: shop, annotations: {metallb.io/ip-allocated-from-pool: prod}}
spec: {type: LoadBalancer, clusterIP: 10.96.0.1, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 10.0.0.1}]}}
---
apiVersion: v1
kind: Service
metadata: {name: new, namespace: shop, annotations: {metallb.universe.tf/allow-shared-ip: k}}
spec: {type: LoadBalancer, clusterIP: 10.96.0.2, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: waiting, namespace: shop}
spec: {type: LoadBalancer, clusterIP: 10.96.0.3, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: was-lb, namespace: shop, annotations: {metallb.io/ip-allocated-from-pool: prod}}
spec: {type: ClusterIP, clusterIP: 10.96.0.4}
status: {loadBalancer: {ingress: [{ip: 10.0.0.0}]}}
"#;

    fn input() -> (Config, Vec<Service>) {
        let parsed = crate::manifest::parse(INPUT, "t", "metallb-system").unwrap();
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
            Some(json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.0"}]}}}))
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
}
