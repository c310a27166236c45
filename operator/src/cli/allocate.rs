//! `ferrolb allocate`: the controller's allocation over manifest files, offline.

use std::process::ExitCode;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service, ServiceStatus};

use super::{emit, load_input};
use crate::alloc::{Decision, POOL_ANNOTATION};
use crate::dry_run;
use crate::views::{ServiceKey, ServiceScope};

/// How `allocate` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Output {
    /// The LoadBalancer Services with their status filled in, as YAML documents.
    Yaml,
    /// One line per LoadBalancer Service: NAMESPACE NAME POOL IPS STATUS.
    Table,
}

/// Runs `allocate`.
pub(super) fn run(
    paths: &[std::path::PathBuf],
    namespace: &str,
    load_balancer_class: Option<String>,
    output: Output,
) -> ExitCode {
    let (manifests, config) = match load_input(paths, namespace) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let scope = ServiceScope {
        load_balancer_class,
    };
    let decisions = dry_run::allocate(&config, &manifests.objects, &scope);
    let mut services: Vec<&Service> = manifests
        .objects
        .services
        .iter()
        .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        .collect();
    services.sort_by_key(|s| ServiceKey::of(s));
    emit(match output {
        Output::Yaml => yaml(&services, &decisions, &scope),
        Output::Table => table(&services, &decisions, &scope),
    })
}

fn handled(service: &Service, scope: &ServiceScope) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_class.clone())
        == scope.load_balancer_class
}

/// The Service as the controller leaves it: ingress and the pool annotation.
fn updated(service: &Service, decision: &Decision) -> Service {
    let mut out = service.clone();
    let annotations = out
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    match &decision.pool {
        Some(pool) if !decision.ingress.is_empty() => {
            annotations.insert(POOL_ANNOTATION.to_string(), pool.clone());
        }
        _ => {
            annotations.remove(POOL_ANNOTATION);
        }
    }
    if annotations.is_empty() {
        out.metadata.annotations = None;
    }
    let status = out.status.get_or_insert_with(ServiceStatus::default);
    status.load_balancer = Some(LoadBalancerStatus {
        ingress: (!decision.ingress.is_empty()).then(|| {
            decision
                .ingress
                .iter()
                .map(|ip| LoadBalancerIngress {
                    ip: Some(ip.to_string()),
                    ip_mode: Some(crate::views::IP_MODE.to_string()),
                    ..LoadBalancerIngress::default()
                })
                .collect()
        }),
    });
    out
}

fn yaml(
    services: &[&Service],
    decisions: &std::collections::BTreeMap<ServiceKey, Decision>,
    scope: &ServiceScope,
) -> Result<String, String> {
    let mut text = String::new();
    for service in services {
        let shown = match decisions.get(&ServiceKey::of(service)) {
            Some(decision) if handled(service, scope) => updated(service, decision),
            _ => (*service).clone(),
        };
        text.push_str("---\n");
        text.push_str(&serde_saphyr::to_string(&shown).map_err(|e| e.to_string())?);
    }
    Ok(text)
}

fn table(
    services: &[&Service],
    decisions: &std::collections::BTreeMap<ServiceKey, Decision>,
    scope: &ServiceScope,
) -> Result<String, String> {
    let mut rows = vec![[
        "NAMESPACE".to_string(),
        "NAME".to_string(),
        "POOL".to_string(),
        "IPS".to_string(),
        "STATUS".to_string(),
    ]];
    for service in services {
        let key = ServiceKey::of(service);
        let decision = decisions.get(&key).filter(|_| handled(service, scope));
        let (pool, ips, status) = match decision {
            None => (
                "-".to_string(),
                "-".to_string(),
                "not handled (other loadBalancerClass)".to_string(),
            ),
            Some(d) => {
                let ips = if d.ingress.is_empty() {
                    "-".to_string()
                } else {
                    d.ingress
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let status = match (&d.pending, d.ingress.is_empty()) {
                    (None, _) => "assigned".to_string(),
                    (Some(why), true) => format!("pending: {why}"),
                    (Some(why), false) => format!("assigned; {why}"),
                };
                (d.pool.clone().unwrap_or_else(|| "-".into()), ips, status)
            }
        };
        rows.push([key.namespace, key.name, pool, ips, status]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in rows {
        for (w, cell) in widths.iter().zip(row.iter()) {
            text.push_str(&format!("{cell:<w$}   "));
        }
        text.push_str(&row[4]);
        text.push('\n');
    }
    Ok(text)
}
