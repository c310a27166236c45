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
pub fn plan(
    config: &Config,
    services: &[Service],
    scope: &ServiceScope,
    memory: &mut EventMemory,
) -> Plan {
    let views: Vec<AllocService> = services.iter().map(AllocService::from_service).collect();
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

/// The `controller` ConfigurationState status for a configuration load made at `now`.
pub fn configuration_state(
    load: &Result<(), Vec<ConfigError>>,
    now: Time,
) -> ConfigurationStateStatus {
    let (result, summary, status, reason, message) = match load {
        Ok(()) => (
            ConfigurationStateResult::Valid,
            None,
            "True",
            "Reconciled",
            "the configuration is valid".to_string(),
        ),
        Err(errors) => {
            let text = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            (
                ConfigurationStateResult::Invalid,
                Some(text.clone()),
                "False",
                "ConfigurationError",
                text,
            )
        }
    };
    ConfigurationStateStatus {
        result: Some(result),
        error_summary: summary,
        conditions: Some(vec![Condition {
            type_: "poolReconcilerValid".to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: now,
            observed_generation: None,
        }]),
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
                merge(&mut value, patch);
            }
            *service = serde_json::from_value(value).unwrap();
        }
    }

    /// RFC 7386 JSON merge patch.
    fn merge(target: &mut Value, patch: &Value) {
        let Value::Object(patch) = patch else {
            *target = patch.clone();
            return;
        };
        if !target.is_object() {
            *target = json!({});
        }
        let map = target.as_object_mut().unwrap();
        for (k, v) in patch {
            if v.is_null() {
                map.remove(k);
            } else {
                merge(map.entry(k.clone()).or_insert(Value::Null), v);
            }
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
    fn configuration_state_carries_the_errors() {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let valid = configuration_state(&Ok(()), now.clone());
        assert_eq!(valid.result, Some(ConfigurationStateResult::Valid));
        assert_eq!(valid.conditions.unwrap()[0].type_, "poolReconcilerValid");
        let parsed = crate::manifest::parse(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [nope]}\n",
            "t",
            "metallb-system",
        )
        .unwrap();
        let errors = config::load(&parsed.objects, &LoadOptions::default()).unwrap_err();
        let invalid = configuration_state(&Err(errors), now);
        assert_eq!(invalid.result, Some(ConfigurationStateResult::Invalid));
        assert!(
            invalid
                .error_summary
                .unwrap()
                .contains("IPAddressPool/metallb-system/p")
        );
        let condition = &invalid.conditions.unwrap()[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", "ConfigurationError")
        );
    }
}
