//! [`Allocator::converge`]: the decision for one Service, kept, cleared, assigned or left
//! pending, and the order pools are tried in.

use super::*;

impl Allocator {
    /// Decides one Service: keeps, clears, assigns or leaves it pending. `scope` decides
    /// whether it is handled at all; Services not handled are released and left alone.
    pub fn converge(&mut self, service: &AllocService, scope: &ServiceScope) -> Decision {
        let mut decision = Decision {
            key: service.key.clone(),
            ingress: Vec::new(),
            pool: None,
            pending: None,
            events: Vec::new(),
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
                decision.ingress = kept.1;
                decision.pool = Some(kept.0);
                return decision;
            }
            self.release(&service.key);
        }
        let result = if !requested.is_empty() {
            self.assign(service, &requested).map(|p| (p, requested))
        } else if let Some(pool) = &service.requested_pool {
            match self.pools.get(pool) {
                None => Err(Refusal(format!(
                    "pool {pool} (metallb.io/address-pool) does not exist"
                ))),
                Some(space) => match serves(&space.pool, service) {
                    Err(e) => Err(e),
                    Ok(()) => self.allocate_families(service, &[Arc::from(pool.as_str())], &wanted),
                },
            }
        } else {
            self.allocate_auto(service, &wanted)
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

    fn allocate_families(
        &mut self,
        service: &AllocService,
        candidates: &[Arc<str>],
        wanted: &[Family],
    ) -> Result<(String, Vec<IpAddr>), Refusal> {
        let mut shortfalls = Vec::new();
        for pool in candidates {
            match self.allocate_from(service, pool, wanted) {
                Ok(ips) => return Ok((pool.to_string(), ips)),
                Err(e) => shortfalls.push((pool, e)),
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
            shortfalls
                .into_iter()
                .map(|(pool, e)| self.explain(pool, service, e))
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
            match self.allocate_families(service, &group, wanted) {
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
