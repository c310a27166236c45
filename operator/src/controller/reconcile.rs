//! One controller pass: load → [`plan_changed`](super::plan::plan_changed) over the Services
//! the watch changed (or [`plan`](super::plan::plan) over all the cached Services) → writes. Runs only
//! on the leader, one pass at a time.
//!
//! Guarantees:
//! - An invalid configuration never revokes an IP: allocation goes on with the last valid
//!   pools (`metallb_k8s_client_config_stale_bool` 1), and until one has loaded, nothing is
//!   written to Services at all.
//! - The pass sees its own writes: a Service patched in an earlier pass whose watch event has
//!   not arrived yet is read as written, so a second pass can never hand its IP to another
//!   Service. Every patch is conditional on the version it was decided from.
//! - Events go out only for writes that succeeded.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::cache::Caches;
use super::metrics::Metrics;
use super::plan::{EventMemory, configuration_state, plan, plan_changed};
use super::writer::{ApiWriter, WriteError};
use crate::api::{ConfigurationStateStatus, IPAddressPoolStatus};
use crate::config::{self, ClusterObjects, Config, LoadOptions};
use crate::views::{KeyRef, ServiceKey, ServiceScope, key_parts};

/// Service and event writes in flight at once.
const IN_FLIGHT: usize = 16;

/// What one pass did.
#[derive(Debug, Default)]
pub(crate) struct PassReport {
    /// Services patched.
    pub written: usize,
    /// Events recorded.
    pub events: usize,
    /// Services holding IPs after the pass.
    pub assigned: usize,
    /// Services left pending.
    pub pending: usize,
    /// Whether the pools in force are older than the cluster's (the newest are invalid).
    pub stale: bool,
    /// Writes that failed; the pass should be retried.
    pub failures: Vec<WriteError>,
}

#[derive(Clone, Debug)]
struct Written {
    /// The version the write was decided from.
    from: Option<String>,
    service: Arc<Service>,
}

/// This controller's write of `service`, while the cache still shows the version the write
/// was decided from (it has not caught up with the write).
fn ours<'a>(written: &'a HashMap<ServiceKey, Written>, service: &Service) -> Option<&'a Written> {
    written
        .get(&key_parts(service) as &dyn KeyRef)
        .filter(|w| w.from.is_some() && w.from == service.metadata.resource_version)
}

/// `service` as this controller last wrote it, where the cache has not caught up.
fn substitute(written: &HashMap<ServiceKey, Written>, service: Arc<Service>) -> Arc<Service> {
    match ours(written, &service) {
        Some(w) => Arc::clone(&w.service),
        None => service,
    }
}

/// Forgets the write to `service` once the cache has caught up with it.
fn forget_caught_up(written: &mut HashMap<ServiceKey, Written>, service: &Service) {
    if ours(written, service).is_none() {
        written.remove(&key_parts(service) as &dyn KeyRef);
    }
}

/// The Services as this controller last wrote them, where the cache has not caught up;
/// forgets every other write.
fn with_own_writes(
    written: &mut HashMap<ServiceKey, Written>,
    services: Vec<Arc<Service>>,
) -> Vec<Arc<Service>> {
    if written.is_empty() {
        return services;
    }
    let mut seen = HashSet::new();
    let services = services
        .into_iter()
        .map(|service| match ours(written, &service) {
            Some(w) => {
                seen.insert(ServiceKey::of(&service));
                Arc::clone(&w.service)
            }
            None => service,
        })
        .collect();
    written.retain(|k, _| seen.contains(k));
    services
}

/// The controller's memory between passes.
#[derive(Debug)]
pub(crate) struct Reconciler {
    options: LoadOptions,
    scope: ServiceScope,
    config: Option<Config>,
    memory: EventMemory,
    written: HashMap<ServiceKey, Written>,
    /// Pool statuses written, with the pool version they were written over.
    pool_statuses: HashMap<String, (Option<String>, IPAddressPoolStatus)>,
    state: Option<ConfigurationStateStatus>,
    stale: bool,
}

impl Reconciler {
    /// A reconciler for ferrolb's namespace and Service scope.
    pub(crate) fn new(options: LoadOptions, scope: ServiceScope) -> Reconciler {
        Reconciler {
            options,
            scope,
            config: None,
            memory: EventMemory::default(),
            written: HashMap::new(),
            pool_statuses: HashMap::new(),
            state: None,
            stale: false,
        }
    }

    /// Starts a term as leader: what another leader wrote meanwhile is only in the cluster,
    /// so forget what this replica said and wrote before.
    pub(crate) fn lead(&mut self) {
        self.memory = EventMemory::default();
        self.written.clear();
        self.pool_statuses.clear();
        self.state = None;
    }

    /// Runs one pass over what `caches` hold at time `now`. Only the Services the watch
    /// changed since the last pass are looked at, while the allocation kept from earlier passes
    /// holds; else (first pass, pools changed, a relist) every one.
    pub(crate) async fn pass(
        &mut self,
        caches: &Caches,
        writer: &ApiWriter,
        metrics: &Metrics,
        now: &Time,
    ) -> PassReport {
        let mut report = PassReport::default();
        let changed = caches.take_changed();
        let objects = caches.configuration();
        let allocation_input = ClusterObjects {
            pools: objects.pools.clone(),
            namespaces: objects.namespaces.clone(),
            ..ClusterObjects::default()
        };
        let pools = match config::load(&allocation_input, &self.options) {
            Ok(loaded) => {
                self.config = Some(loaded);
                Ok(())
            }
            Err(errors) => {
                report.stale = true;
                if !self.stale {
                    tracing::warn!(
                        errors = errors.len(),
                        "pool configuration invalid; keeping the last valid one"
                    );
                }
                Err(errors)
            }
        };
        if self.stale && !report.stale {
            tracing::info!("pool configuration valid again");
        }
        self.stale = report.stale;
        let all = config::load(&objects, &self.options).map(drop);
        metrics
            .client
            .set_config(self.config.is_some(), report.stale);

        let state = configuration_state(&pools, &all, self.state.as_ref(), now);
        if self.state.as_ref() != Some(&state) {
            match writer.configuration_state(&state).await {
                Ok(()) => self.state = Some(state),
                Err(error) => report.failures.push(error),
            }
        }

        let Some(config) = &self.config else {
            return report;
        };
        // The Services the plan reads, by key: when the kept allocation allows, the changed
        // ones and whichever else it asks for (those waiting for a freed IP), else all.
        let read: RefCell<HashMap<ServiceKey, Arc<Service>>> = RefCell::new(HashMap::new());
        let sparse = match changed {
            Some(keys) => {
                for key in keys.iter().chain(self.memory.rechecks()) {
                    // Forgets own writes the cache has caught up with.
                    if let Some(service) = caches.service(key) {
                        forget_caught_up(&mut self.written, &service);
                    }
                }
                let written = &self.written;
                let find = |key: &ServiceKey| {
                    if let Some(service) = read.borrow().get(key) {
                        return Some(Arc::clone(service));
                    }
                    let service = substitute(written, caches.service(key)?);
                    read.borrow_mut().insert(key.clone(), Arc::clone(&service));
                    Some(service)
                };
                plan_changed(config, keys, find, &self.scope, &mut self.memory)
            }
            None => None,
        };
        let read = read.into_inner();
        let (plan, all) = match sparse {
            Some(plan) => (plan, Vec::new()),
            None => {
                let all = with_own_writes(&mut self.written, caches.services());
                (plan(config, &all, &self.scope, &mut self.memory), all)
            }
        };
        metrics.set_usage(&plan.usage);
        report.assigned = plan.assigned;
        report.pending = plan.pending;

        // Services written or given events were read by the plan (changed ones), or are in
        // `all`; a key missing from both is one deleted meanwhile.
        let by_key: HashMap<(&str, &str), &Service> = if all.is_empty() {
            plan.writes
                .iter()
                .map(|w| &w.key)
                .chain(plan.events.iter().map(|(k, _)| k))
                .filter_map(|key| Some((key.parts(), read.get(key)?.as_ref())))
                .collect()
        } else {
            all.iter().map(|s| (key_parts(s), s.as_ref())).collect()
        };
        let mut failed = HashSet::new();
        // Writes go out IN_FLIGHT at a time (a burst of new Services is not a queue of
        // round trips); results are taken in plan order.
        let writes: Vec<_> = futures::stream::iter(0..plan.writes.len())
            .map(|i| {
                let write = &plan.writes[i];
                let from = by_key
                    .get(&write.key.parts())
                    .map(|service| service.metadata.resource_version.clone());
                async move {
                    let result = match &from {
                        Some(from) => Some(writer.service(write, from.as_deref()).await),
                        None => None,
                    };
                    (write, from.flatten(), result)
                }
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        for (write, from, result) in writes {
            let Some(result) = result else {
                continue;
            };
            match result {
                Ok(Some(written)) => {
                    report.written += 1;
                    tracing::info!(service = %write.key, ingress = ?crate::views::ingress_ips(&written), "service updated");
                    self.written.insert(
                        write.key.clone(),
                        Written {
                            from,
                            service: Arc::new(written),
                        },
                    );
                }
                Ok(None) => {}
                Err(error) => {
                    failed.insert(write.key.clone());
                    report.failures.push(error);
                }
            }
        }
        let events: Vec<_> = futures::stream::iter(0..plan.events.len())
            .filter_map(|i| {
                let (key, event) = &plan.events[i];
                let service = by_key.get(&key.parts()).filter(|_| !failed.contains(key));
                futures::future::ready(service.map(|service| writer.event(service, event)))
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for result in events {
            match result {
                Ok(()) => report.events += 1,
                Err(error) => report.failures.push(error),
            }
        }
        let mut current = HashMap::new();
        for pool in &objects.pools {
            let Some(name) = pool.metadata.name.as_deref() else {
                continue;
            };
            let Some(status) = plan.pools.get(name) else {
                continue;
            };
            let version = pool.metadata.resource_version.clone();
            // The cache may not show a status written in an earlier pass yet.
            let shown = match self.pool_statuses.get(name) {
                Some((from, written)) if *from == version => Some(written),
                _ => pool.status.as_ref(),
            };
            if shown == Some(status) {
                if let Some(entry) = self.pool_statuses.remove(name) {
                    current.insert(name.to_string(), entry);
                }
                continue;
            }
            match writer.pool_status(name, status).await {
                Ok(()) => {
                    current.insert(name.to_string(), (version, status.clone()));
                }
                Err(error) => report.failures.push(error),
            }
        }
        self.pool_statuses = current;
        report
    }
}
