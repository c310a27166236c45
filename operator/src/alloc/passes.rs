//! Passes over many Services: the order they are decided in, and IPs freed by a pass handed
//! to the Services still waiting. The controller's first pass ([`allocate_all`]) and its
//! incremental passes (`controller::plan`) both run these.

use std::collections::{BTreeMap, HashMap};

use super::{AllocService, Allocator, Decision};
use crate::config::Config;
use crate::views::{ServiceKey, ServiceScope};

/// Services holding IPs first (more IPs first), then the others, by name: the order in which
/// the controller decides Services, so that those holding IPs keep them.
pub fn holders_first(a: &AllocService, b: &AllocService) -> std::cmp::Ordering {
    b.ingress
        .len()
        .cmp(&a.ingress.len())
        .then_with(|| a.key.cmp(&b.key))
}

/// How many times one pass decides the Services still waiting again.
const RETRY_ROUNDS: usize = 8;

/// Decisions by Service, in either kind of map.
pub trait Decisions {
    /// The Services still waiting for an IP, by key.
    fn waiting(&self) -> Vec<ServiceKey>;
    /// One Service's decision.
    fn decision_mut(&mut self, key: &ServiceKey) -> Option<&mut Decision>;
}

fn waiting<'d>(decisions: impl Iterator<Item = (&'d ServiceKey, &'d Decision)>) -> Vec<ServiceKey> {
    decisions
        .filter(|(_, d)| d.pending.is_some() && d.ingress.is_empty())
        .map(|(k, _)| k.clone())
        .collect()
}

impl Decisions for BTreeMap<ServiceKey, Decision> {
    fn waiting(&self) -> Vec<ServiceKey> {
        waiting(self.iter())
    }

    fn decision_mut(&mut self, key: &ServiceKey) -> Option<&mut Decision> {
        self.get_mut(key)
    }
}

impl Decisions for HashMap<ServiceKey, Decision> {
    fn waiting(&self) -> Vec<ServiceKey> {
        let mut keys = waiting(self.iter());
        keys.sort_unstable();
        keys
    }

    fn decision_mut(&mut self, key: &ServiceKey) -> Option<&mut Decision> {
        self.get_mut(key)
    }
}

/// Gives IPs that a pass freed to the Services still waiting, by key, round after round while
/// a round assigns something (at most [`RETRY_ROUNDS`]). A Service that gets IPs has its
/// decision replaced, its `AllocationFailed` Event dropped. `view` gives each waiting Service
/// as allocation sees it (`None`: leave it).
pub fn serve_waiting<'v>(
    allocator: &mut Allocator,
    decisions: &mut impl Decisions,
    scope: &ServiceScope,
    view: impl Fn(&ServiceKey) -> Option<&'v AllocService>,
) {
    for _ in 0..RETRY_ROUNDS {
        let mut assigned = false;
        for key in decisions.waiting() {
            let Some(service) = view(&key) else {
                continue;
            };
            let again = allocator.converge(service, scope);
            if !again.ingress.is_empty()
                && let Some(previous) = decisions.decision_mut(&key)
            {
                let mut events = std::mem::take(&mut previous.events);
                events.retain(|e| e.reason != "AllocationFailed");
                events.extend(again.events.clone());
                *previous = Decision { events, ..again };
                assigned = true;
            }
        }
        if !assigned {
            break;
        }
    }
}

/// Allocates for every Service the way the controller does when it (re)builds its state:
/// an empty allocator over `config`, Services in [`holders_first`] order so they keep what
/// they hold; then, when that freed IPs, [`serve_waiting`]. Returns the allocator and one
/// decision per Service, by key.
pub fn allocate_all(
    config: &Config,
    services: &[AllocService],
    scope: &ServiceScope,
) -> (Allocator, BTreeMap<ServiceKey, Decision>) {
    allocate_all_explaining(config, services, scope, None)
}

/// [`allocate_all`], with the decision of the Service `explain` carrying its [`Choice`].
pub fn allocate_all_explaining(
    config: &Config,
    services: &[AllocService],
    scope: &ServiceScope,
    explain: Option<&ServiceKey>,
) -> (Allocator, BTreeMap<ServiceKey, Decision>) {
    let mut allocator = Allocator::new(config);
    allocator.explaining = explain.cloned();
    let mut order: Vec<&AllocService> = services.iter().collect();
    order.sort_by(|a, b| holders_first(a, b));
    let mut decisions = BTreeMap::new();
    let mut freed = false;
    for service in order {
        let decision = allocator.converge(service, scope);
        freed |= !service.ingress.is_empty() && decision.ingress != service.ingress;
        decisions.insert(service.key.clone(), decision);
    }
    if freed {
        let by_key: HashMap<&ServiceKey, &AllocService> =
            services.iter().map(|s| (&s.key, s)).collect();
        serve_waiting(&mut allocator, &mut decisions, scope, |key| {
            by_key.get(key).copied()
        });
    }
    (allocator, decisions)
}
