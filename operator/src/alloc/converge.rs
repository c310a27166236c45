//! [`Allocator::converge`]: the decision for one Service, kept, cleared, assigned or left
//! pending, the order pools are tried in, and the [`Choice`] behind it.

use super::*;

/// What one decision tried, kept for its [`Choice`].
#[derive(Default)]
struct Notes {
    how: Option<How>,
    /// Pools tried and why each could not give the IPs, in the order tried.
    tried: Vec<(Arc<str>, Shortfall)>,
    /// The pool holding the requested IPs, or the pool asked for by name, and why it refused.
    refused: Option<(String, String)>,
}

impl Allocator {
    /// Decides one Service: keeps, clears, assigns or leaves it pending. `scope` decides
    /// whether it is handled at all; Services not handled are released and left alone.
    pub fn converge(&mut self, service: &AllocService, scope: &ServiceScope) -> Decision {
        let mut notes = Notes::default();
        let mut decision = self.decide(service, scope, &mut notes);
        if self.explaining.as_ref() == Some(&service.key) {
            decision.choice = Some(Box::new(self.choice(service, &decision, notes)));
        }
        decision
    }

    /// Why each pool but the chosen one does not serve the Service, from what the decision
    /// tried and, for pools it did not try, the rule that left them out.
    fn choice(&self, service: &AllocService, decision: &Decision, notes: Notes) -> Choice {
        let chosen = decision.pool.as_deref();
        let wanted = service.wanted_families();
        let mut refused = BTreeMap::new();
        for (name, space) in &self.pools {
            if chosen == Some(name.as_str()) {
                continue;
            }
            let tried = notes.tried.iter().rev().find(|(p, _)| **p == **name);
            let reason = if let Some((_, shortfall)) = tried {
                self.explain(name, service, *shortfall)
            } else if let Some((_, why)) = notes.refused.as_ref().filter(|(p, _)| p == name) {
                why.clone()
            } else {
                match notes.how {
                    None => decision.pending.clone().unwrap_or_else(|| {
                        "ferrolb does not handle the Service (loadBalancerClass or type)"
                            .to_string()
                    }),
                    Some(How::Kept) => "the Service keeps the IPs it holds".to_string(),
                    Some(How::RequestedIps) => "the requested IPs are not in it".to_string(),
                    Some(How::RequestedPool) => format!(
                        "the Service asks for pool {}",
                        service.requested_pool.as_deref().unwrap_or_default()
                    ),
                    Some(How::Automatic) => {
                        let missing: Vec<Family> =
                            wanted.iter().copied().filter(|f| !space.has(*f)).collect();
                        if !space.pool.auto_assign {
                            "autoAssign: false (used only when asked for by name or IP)".to_string()
                        } else if let Err(why) = serves(&space.pool, service) {
                            why.0
                        } else if !missing.is_empty() {
                            format!(
                                "it has no {} addresses",
                                missing
                                    .iter()
                                    .map(Family::to_string)
                                    .collect::<Vec<_>>()
                                    .join(" or ")
                            )
                        } else if let Some(chosen) = chosen {
                            format!("pool {chosen} comes first")
                        } else {
                            "it has no free address for the Service".to_string()
                        }
                    }
                }
            };
            refused.insert(name.clone(), reason);
        }
        Choice {
            how: notes.how,
            refused,
        }
    }

    fn decide(
        &mut self,
        service: &AllocService,
        scope: &ServiceScope,
        notes: &mut Notes,
    ) -> Decision {
        let mut decision = Decision {
            key: service.key.clone(),
            ingress: Vec::new(),
            pool: None,
            pending: None,
            events: Vec::new(),
            choice: None,
        };
        if !service.in_scope(scope) {
            self.release(&service.key);
            if service.is_load_balancer {
                // Another class: not ours, its status is someone else's.
                decision.ingress = service.ingress.clone();
            }
            return decision;
        }
        let pending = |mut d: Decision, reason: String| {
            d.pending = Some(reason);
            d
        };
        if self.pools.is_empty() {
            self.release(&service.key);
            return pending(decision, "no IPAddressPool exists".to_string());
        }
        if service.cluster_families.is_empty() {
            self.release(&service.key);
            return pending(
                decision,
                "the Service has no ClusterIP (headless or not yet set), so its IP family is unknown"
                    .to_string(),
            );
        }
        if service.policy == FamilyPolicy::RequireDualStack && service.cluster_families.len() < 2 {
            self.release(&service.key);
            let reason = "ipFamilyPolicy RequireDualStack, but the Service has one ClusterIP";
            decision.events.push(Event::warning(
                "not enough clusterips",
                format!("{reason}; no IP is assigned"),
            ));
            return pending(decision, reason.to_string());
        }
        let wanted = service.wanted_families();
        let requested = match &service.requested_ips {
            Ok(ips) => ips.clone(),
            Err(why) => {
                // A request that cannot be read changes nothing that works.
                decision.events.push(Event::warning(
                    "LoadBalancerFailed",
                    format!("Failed to retrieve LBIPs: {why}"),
                ));
                if !service.ingress.is_empty()
                    && let Ok(pool) = self.assign(service, &service.ingress)
                {
                    decision.ingress = service.ingress.clone();
                    decision.pool = Some(pool);
                } else {
                    self.release(&service.key);
                }
                return pending(decision, why.clone());
            }
        };
        if !requested.is_empty() {
            let asked: BTreeSet<Family> = requested.iter().map(Family::of).collect();
            let needed: BTreeSet<Family> = wanted.iter().copied().collect();
            if asked != needed {
                self.release(&service.key);
                let reason = format!(
                    "requested IPs {} are {} but the Service's ClusterIPs and ipFamilyPolicy need {}",
                    list(&requested),
                    families(&asked),
                    families(&needed)
                );
                decision.events.push(Event::warning(
                    "AllocationFailed",
                    format!("Failed to allocate IP for \"{}\": {reason}", service.key),
                ));
                return pending(decision, reason);
            }
        }
        // Keep what the Service holds while it stays valid.
        if !service.ingress.is_empty() {
            if let Some(kept) = self.keep(service, &wanted, &requested, &mut decision) {
                notes.how = Some(How::Kept);
                decision.ingress = kept.1;
                decision.pool = Some(kept.0);
                return decision;
            }
            self.release(&service.key);
        }
        let result = if !requested.is_empty() {
            notes.how = Some(How::RequestedIps);
            let first = requested[0];
            let result = self.assign(service, &requested).map(|p| (p, requested));
            if let (Err(why), Some(pool)) = (&result, self.pool_of(first)) {
                notes.refused = Some((pool.to_string(), why.0.clone()));
            }
            result
        } else if let Some(pool) = &service.requested_pool {
            notes.how = Some(How::RequestedPool);
            match self.pools.get(pool) {
                None => Err(Refusal(format!(
                    "pool {pool} (metallb.io/address-pool) does not exist"
                ))),
                Some(space) => match serves(&space.pool, service) {
                    Err(e) => {
                        notes.refused = Some((pool.clone(), e.0.clone()));
                        Err(e)
                    }
                    Ok(()) => self.allocate_families(
                        service,
                        &[Arc::from(pool.as_str())],
                        &wanted,
                        &mut notes.tried,
                    ),
                },
            }
        } else {
            notes.how = Some(How::Automatic);
            self.allocate_auto(service, &wanted, &mut notes.tried)
        };
        match result {
            Ok((pool, ips)) => {
                decision.events.push(Event::normal(
                    "IPAllocated",
                    format!("Assigned IP {}", quoted(&ips)),
                ));
                decision.ingress = ips;
                decision.pool = Some(pool);
                decision
            }
            Err(why) => {
                decision.events.push(Event::warning(
                    "AllocationFailed",
                    format!("Failed to allocate IP for \"{}\": {why}", service.key),
                ));
                pending(decision, why.0)
            }
        }
    }

    /// Re-validates the Service's current IPs; `None` when they must go.
    fn keep(
        &mut self,
        service: &AllocService,
        wanted: &[Family],
        requested: &[IpAddr],
        decision: &mut Decision,
    ) -> Option<(String, Vec<IpAddr>)> {
        let current = &service.ingress;
        let held: BTreeSet<Family> = current.iter().map(Family::of).collect();
        let needed: BTreeSet<Family> = wanted.iter().copied().collect();
        let one_short = service.policy == FamilyPolicy::PreferDualStack
            && current.len() == 1
            && needed.len() == 2
            && held.is_subset(&needed);
        if current.len() != held.len() || (held != needed && !one_short) {
            return None;
        }
        if !requested.is_empty() {
            let asked: BTreeSet<&IpAddr> = requested.iter().collect();
            if asked != current.iter().collect() {
                return None;
            }
        }
        if let Some(wanted_pool) = &service.requested_pool {
            let pool = self.pool_of(current[0]);
            if pool != Some(wanted_pool.as_str()) {
                return None;
            }
        }
        let pool = match self.assign(service, current) {
            Ok(p) => p,
            Err(why) => {
                decision.events.push(Event::normal(
                    "ClearAssignment",
                    format!(
                        "current IP {} not allowed by config, clearing: {why}",
                        list(current)
                    ),
                ));
                return None;
            }
        };
        let mut ips = current.clone();
        if one_short {
            let missing: Vec<Family> = wanted
                .iter()
                .copied()
                .filter(|f| !held.contains(f))
                .collect();
            let space = &self.pools[&pool];
            if missing.iter().all(|f| space.has(*f)) {
                let mut all = ips.clone();
                let extra = missing
                    .iter()
                    .map(|f| self.pick(service, &pool, *f))
                    .collect::<Option<Vec<IpAddr>>>();
                match extra {
                    Some(extra) => {
                        all.extend(&extra);
                        self.take(service, &pool, &all);
                        decision.events.push(Event::normal(
                            "IPAllocated",
                            format!("Assigned additional IP {}", quoted(&extra)),
                        ));
                        ips = all;
                    }
                    None => decision.events.push(Event::normal(
                        "AdditionalAssignFailed",
                        format!("pool {pool} has no free {} address", families_of(&missing)),
                    )),
                }
            }
        }
        Some((pool, ips))
    }

    /// The first of `candidates` that gives the Service `wanted`; each that does not is
    /// added to `tried` with why.
    fn allocate_families(
        &mut self,
        service: &AllocService,
        candidates: &[Arc<str>],
        wanted: &[Family],
        tried: &mut Vec<(Arc<str>, Shortfall)>,
    ) -> Result<(String, Vec<IpAddr>), Refusal> {
        let start = tried.len();
        for pool in candidates {
            match self.allocate_from(service, pool, wanted) {
                Ok(ips) => return Ok((pool.to_string(), ips)),
                Err(e) => tried.push((pool.clone(), e)),
            }
        }
        if wanted.len() == 2 && service.policy == FamilyPolicy::PreferDualStack {
            for family in wanted {
                for pool in candidates {
                    if let Ok(ips) = self.allocate_from(service, pool, &[*family]) {
                        return Ok((pool.to_string(), ips));
                    }
                }
            }
        }
        Err(Refusal(
            tried[start..]
                .iter()
                .map(|(pool, e)| self.explain(pool, service, *e))
                .collect::<Vec<_>>()
                .join("; "),
        ))
    }

    /// Automatic allocation: pools whose serviceAllocation serves the Service, by priority,
    /// then pools without one, by name; autoAssign pools only.
    fn allocate_auto(
        &mut self,
        service: &AllocService,
        wanted: &[Family],
        tried: &mut Vec<(Arc<str>, Shortfall)>,
    ) -> Result<(String, Vec<IpAddr>), Refusal> {
        let pinned: Vec<Arc<str>> = self
            .pinned
            .iter()
            .filter(|n| {
                self.pools
                    .get(&***n)
                    .is_some_and(|p| serves_quietly(&p.pool, service))
            })
            .cloned()
            .collect();
        let open = self.open.clone();
        let mut refusals = Vec::new();
        for group in [pinned, open] {
            if group.is_empty() {
                continue;
            }
            match self.allocate_families(service, &group, wanted, tried) {
                Ok(done) => return Ok(done),
                Err(e) => refusals.push(e.0),
            }
        }
        for name in &self.manual {
            refusals.push(format!("pool {name} has autoAssign: false"));
        }
        for name in &self.pinned {
            if let Some(Err(e)) = self.pools.get(&**name).map(|p| serves(&p.pool, service)) {
                refusals.push(e.0);
            }
        }
        if refusals.is_empty() {
            refusals.push("no pool can serve the Service".to_string());
        }
        Err(Refusal(format!(
            "no pool could give {}: {}",
            families_of(wanted),
            refusals.join("; ")
        )))
    }
}
