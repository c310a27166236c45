//! IP allocation for LoadBalancer Services, following MetalLB's controller rule for rule
//! (`controller/service.go`, `internal/allocator/`), with a reason a user can act on for every
//! Service left pending.
//!
//! Pure: [`Allocator`] holds the pools and which Service uses which IP; [`Allocator::converge`]
//! decides one Service (keep, clear, assign, or leave pending, with MetalLB's Events), and
//! [`allocate_all`] runs a whole cluster the way the controller does after a start or a
//! configuration change: Services that already hold IPs first, so they keep them, then the
//! rest, repeated while IPs freed by one pass can serve Services still pending.
//!
//! The rules:
//! - handled: `type: LoadBalancer` with the served `loadBalancerClass`;
//! - families: those of the ClusterIPs; two only with `PreferDualStack`/`RequireDualStack`
//!   and two ClusterIPs; `RequireDualStack` with one ClusterIP gets nothing;
//! - requested IPs (`metallb.io/loadBalancerIPs`, `spec.loadBalancerIP`) must lie in one pool
//!   (honouring avoidBuggyIPs), match the families, and the pool must serve the Service;
//! - `metallb.io/address-pool` names the pool (autoAssign does not matter then);
//! - otherwise pools whose serviceAllocation serves the Service, by priority (lower first,
//!   0 last, then by name), then pools without serviceAllocation, by name; only pools with
//!   autoAssign; for two families a pool with both, then (PreferDualStack) one family;
//! - within a pool, blocks in entry order, each from its lowest address, the first address
//!   that is free or may be shared;
//! - sharing needs the same non-empty `allow-shared-ip` key, the same backend (Cluster, or
//!   Local with the same selector) and no common `(protocol, port)`;
//! - a Service keeps IPs it holds while they stay valid; otherwise they are cleared
//!   (`ClearAssignment`) and allocation starts again.

mod converge;
mod passes;
mod pools;
mod service;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

pub use passes::{Decisions, allocate_all, allocate_all_explaining, holders_first, serve_waiting};
pub use service::{AllocService, Family, FamilyPolicy, Port};

use crate::config::{Config, Pool};
use crate::views::{ServiceKey, ServiceScope};
use pools::PoolSpace;

/// The annotation naming the pool a Service's IPs came from.
pub const POOL_ANNOTATION: &str = "metallb.io/ip-allocated-from-pool";

/// An Event the controller records on the Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// MetalLB's reason word.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

impl Event {
    fn normal(reason: &'static str, message: String) -> Event {
        Event {
            type_: "Normal",
            reason,
            message,
        }
    }

    fn warning(reason: &'static str, message: String) -> Event {
        Event {
            type_: "Warning",
            reason,
            message,
        }
    }
}

/// What the controller should make of one Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The Service.
    pub key: ServiceKey,
    /// The ingress IPs it should show (empty: none).
    pub ingress: Vec<IpAddr>,
    /// The pool they come from.
    pub pool: Option<String>,
    /// Why the Service has no (or not all its) IPs, when that is so.
    pub pending: Option<String>,
    /// Events to record.
    pub events: Vec<Event>,
    /// How the pool was chosen and why each other pool was not, when the allocator was asked
    /// to explain this Service ([`allocate_all_explaining`]).
    #[serde(skip)]
    pub choice: Option<Box<Choice>>,
}

/// How the pool of a Service's IPs was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// The Service keeps the IPs it holds.
    Kept,
    /// `metallb.io/loadBalancerIPs` or `spec.loadBalancerIP`.
    RequestedIps,
    /// `metallb.io/address-pool`.
    RequestedPool,
    /// Pools with a serviceAllocation by priority, then the others by name.
    Automatic,
}

impl fmt::Display for How {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            How::Kept => "kept: the Service already holds these IPs and they are still valid",
            How::RequestedIps => "requested: metallb.io/loadBalancerIPs (or spec.loadBalancerIP)",
            How::RequestedPool => "requested: metallb.io/address-pool",
            How::Automatic => {
                "automatic: pools with serviceAllocation by priority, then the rest by name; autoAssign pools only"
            }
        })
    }
}

/// The choice behind a [`Decision`], pool by pool, as [`Allocator::converge`] made it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Choice {
    /// How the pool was looked for; `None` when the Service was refused before any pool was.
    pub how: Option<How>,
    /// Why each pool other than the chosen one does not give the Service its IPs, by pool.
    pub refused: BTreeMap<String, String>,
}

/// One Service's use of an IP.
#[derive(Clone, Debug)]
struct User {
    service: ServiceKey,
    sharing_key: Option<String>,
    backend_key: String,
    ports: Vec<Port>,
}

#[derive(Clone, Debug)]
struct IpUse {
    pool: Arc<str>,
    users: Vec<User>,
}

/// Address usage of one pool, for its status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PoolUsage {
    /// IPv4 addresses in use.
    pub assigned_ipv4: u128,
    /// IPv6 addresses in use.
    pub assigned_ipv6: u128,
    /// IPv4 addresses free.
    pub available_ipv4: u128,
    /// IPv6 addresses free.
    pub available_ipv6: u128,
}

/// The pools and who uses which IP.
#[derive(Clone, Debug, Default)]
pub struct Allocator {
    pools: BTreeMap<String, PoolSpace>,
    ips: HashMap<IpAddr, IpUse>,
    /// The IPs each Service holds (their pool is in `ips`).
    assigned: HashMap<ServiceKey, Vec<IpAddr>>,
    /// Per pool and sharing key, the IPs used with that key.
    shared: HashMap<(String, String), BTreeSet<IpAddr>>,
    /// autoAssign pools with a serviceAllocation, in the order they are tried.
    pinned: Vec<Arc<str>>,
    /// autoAssign pools without a serviceAllocation, by name.
    open: Vec<Arc<str>>,
    /// Pools with autoAssign false.
    manual: Vec<Arc<str>>,
    /// The Service whose decisions carry their [`Choice`].
    explaining: Option<ServiceKey>,
}

/// Why a pool could not give a Service its IPs; worded only when allocation fails.
#[derive(Clone, Copy, Debug)]
enum Shortfall {
    NoPool,
    Missing(Family),
    Exhausted(Family),
}

/// Why an IP cannot go to a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Refusal(String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Allocator {
    /// An allocator over the configuration's pools, with nothing assigned.
    pub fn new(config: &Config) -> Allocator {
        let mut pinned: Vec<(i32, Arc<str>)> = Vec::new();
        let mut open = Vec::new();
        let mut manual = Vec::new();
        for pool in config.pools.values() {
            let name: Arc<str> = Arc::from(pool.name.as_str());
            match (&pool.allocation, pool.auto_assign) {
                (_, false) => manual.push(name),
                (None, true) => open.push(name),
                (Some(a), true) => pinned.push((a.priority, name)),
            }
        }
        // Lower priority first, 0 (unset) last, then by name.
        pinned.sort_by(|a, b| (a.0 == 0, a.0, &a.1).cmp(&(b.0 == 0, b.0, &b.1)));
        Allocator {
            pools: config
                .pools
                .values()
                .map(|p| (p.name.clone(), PoolSpace::new(p)))
                .collect(),
            pinned: pinned.into_iter().map(|(_, n)| n).collect(),
            open,
            manual,
            ..Allocator::default()
        }
    }

    /// Usage per pool.
    pub fn usage(&self) -> BTreeMap<String, PoolUsage> {
        self.pools
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    PoolUsage {
                        assigned_ipv4: p.used[0],
                        assigned_ipv6: p.used[1],
                        available_ipv4: p.available(Family::V4),
                        available_ipv6: p.available(Family::V6),
                    },
                )
            })
            .collect()
    }

    /// Frees whatever the Service holds.
    pub fn release(&mut self, key: &ServiceKey) -> bool {
        let Some(held) = self.assigned.remove(key) else {
            return false;
        };
        for ip in held {
            let Some(using) = self.ips.get_mut(&ip) else {
                continue;
            };
            let mut gone_key = None;
            using.users.retain(|u| {
                if u.service == *key {
                    gone_key = u.sharing_key.clone();
                    false
                } else {
                    true
                }
            });
            if using.users.is_empty() {
                let pool = using.pool.clone();
                self.ips.remove(&ip);
                if let Some(space) = self.pools.get_mut(&*pool) {
                    space.used[Family::of(&ip).index()] -= 1;
                    space.freed(ip);
                }
                if let Some(k) = gone_key {
                    let index = (pool.to_string(), k);
                    if let Some(set) = self.shared.get_mut(&index) {
                        set.remove(&ip);
                        if set.is_empty() {
                            self.shared.remove(&index);
                        }
                    }
                }
            }
        }
        true
    }

    /// Whether `service` may use `ip` next to its current users.
    fn may_share(&self, service: &AllocService, ip: IpAddr) -> Result<(), Refusal> {
        let Some(using) = self.ips.get(&ip) else {
            return Ok(());
        };
        for other in using.users.iter().filter(|u| u.service != service.key) {
            let who = &other.service;
            match (&service.sharing_key, &other.sharing_key) {
                (None, _) => {
                    return Err(Refusal(format!(
                        "IP {ip} is used by {who}, and this Service has no metallb.io/allow-shared-ip key"
                    )));
                }
                (Some(_), None) => {
                    return Err(Refusal(format!(
                        "IP {ip} is used by {who}, which does not allow sharing (no metallb.io/allow-shared-ip key)"
                    )));
                }
                (Some(mine), Some(theirs)) if mine != theirs => {
                    return Err(Refusal(format!(
                        "IP {ip} is used by {who} with a different sharing key ({theirs:?}, this Service has {mine:?})"
                    )));
                }
                _ => {}
            }
            if other.backend_key != service.backend_key {
                let describe = |k: &str| {
                    if k.is_empty() {
                        "externalTrafficPolicy Cluster".to_string()
                    } else {
                        format!("externalTrafficPolicy Local with selector {k}")
                    }
                };
                return Err(Refusal(format!(
                    "IP {ip} is shared by {who}, which has {}, and this Service has {}: sharing needs the same policy and, for Local, the same selector",
                    describe(&other.backend_key),
                    describe(&service.backend_key)
                )));
            }
            if let Some(port) = service.ports.iter().find(|p| other.ports.contains(p)) {
                return Err(Refusal(format!(
                    "port {port} of IP {ip} is already used by {who}"
                )));
            }
        }
        Ok(())
    }

    /// Which pool holds `ip`: [`Pool::contains`], the rule [`Config::pool_of`] applies for
    /// announcing (avoidBuggyIPs honoured).
    fn pool_of(&self, ip: IpAddr) -> Option<&str> {
        self.pools
            .iter()
            .find(|(_, p)| p.pool.contains(ip))
            .map(|(n, _)| n.as_str())
    }

    /// Gives exactly `ips` to the Service, from one pool.
    fn assign(&mut self, service: &AllocService, ips: &[IpAddr]) -> Result<String, Refusal> {
        let mut pool: Option<&str> = None;
        for ip in ips {
            let Some(p) = self.pool_of(*ip) else {
                let why = if self
                    .pools
                    .values()
                    .any(|p| p.pool.cidrs().any(|c| c.contains(ip)))
                {
                    " (avoidBuggyIPs skips addresses ending in .0 and .255)"
                } else {
                    ""
                };
                return Err(Refusal(format!("IP {ip} is in no IPAddressPool{why}")));
            };
            match pool {
                Some(first) if first != p => {
                    return Err(Refusal(format!(
                        "IPs {} and {ip} are in different pools ({first} and {p}); both must come from one pool",
                        ips[0]
                    )));
                }
                _ => pool = Some(p),
            }
        }
        let Some(pool) = pool.map(str::to_string) else {
            return Err(Refusal("no IP to assign".to_string()));
        };
        if let Some(wanted) = &service.requested_pool
            && *wanted != pool
        {
            return Err(Refusal(format!(
                "IP {} is in pool {pool}, but metallb.io/address-pool asks for pool {wanted}",
                ips[0]
            )));
        }
        serves(&self.pools[&pool].pool, service)?;
        for ip in ips {
            self.may_share(service, *ip)?;
        }
        self.take(service, &pool, ips);
        Ok(pool)
    }

    /// Records the Service as the user of `ips` (checked already), replacing what it held.
    fn take(&mut self, service: &AllocService, pool: &str, ips: &[IpAddr]) {
        self.release(&service.key);
        let name: Arc<str> = match self.pools.get(pool) {
            Some(space) => space.name.clone(),
            None => Arc::from(pool),
        };
        for ip in ips {
            let using = self.ips.entry(*ip).or_insert_with(|| IpUse {
                pool: name.clone(),
                users: Vec::new(),
            });
            if using.users.is_empty()
                && let Some(space) = self.pools.get_mut(pool)
            {
                space.used[Family::of(ip).index()] += 1;
            }
            using.users.push(User {
                service: service.key.clone(),
                sharing_key: service.sharing_key.clone(),
                backend_key: service.backend_key.clone(),
                ports: service.ports.clone(),
            });
            if let Some(k) = &service.sharing_key {
                self.shared
                    .entry((pool.to_string(), k.clone()))
                    .or_default()
                    .insert(*ip);
            }
        }
        self.assigned.insert(service.key.clone(), ips.to_vec());
    }

    /// The first IP of `family` in `pool`, in scan order, that the Service may use.
    fn pick(&mut self, service: &AllocService, pool: &str, family: Family) -> Option<IpAddr> {
        // An IP already shared under the Service's key comes first when it is earlier in scan
        // order than the first free one and sharing is allowed.
        let mut shareable: Option<(usize, IpAddr)> = None;
        if let Some(k) = &service.sharing_key
            && let Some(set) = self.shared.get(&(pool.to_string(), k.clone()))
        {
            let space = &self.pools[pool];
            for ip in set.iter().filter(|ip| Family::of(ip) == family) {
                if self.may_share(service, *ip).is_err() {
                    continue;
                }
                if let Some(block) = space.block_of(*ip)
                    && shareable.is_none_or(|(b, s)| (block, *ip) < (b, s))
                {
                    shareable = Some((block, *ip));
                }
            }
        }
        let ips = &self.ips;
        let space = self.pools.get_mut(pool)?;
        let free = space.first_free(family, |ip| ips.contains_key(&ip));
        match (shareable, free) {
            (Some(s), Some(f)) => Some(if s < f { s.1 } else { f.1 }),
            (Some(s), None) => Some(s.1),
            (None, f) => f.map(|f| f.1),
        }
    }

    /// Allocates one IP of each family from the pool.
    fn allocate_from(
        &mut self,
        service: &AllocService,
        pool: &str,
        families: &[Family],
    ) -> Result<Vec<IpAddr>, Shortfall> {
        let Some(space) = self.pools.get(pool) else {
            return Err(Shortfall::NoPool);
        };
        if let Some(missing) = families.iter().find(|f| !space.has(**f)) {
            return Err(Shortfall::Missing(*missing));
        }
        let mut ips = Vec::with_capacity(families.len());
        for family in families {
            match self.pick(service, pool, *family) {
                Some(ip) => ips.push(ip),
                None => return Err(Shortfall::Exhausted(*family)),
            }
        }
        self.take(service, pool, &ips);
        Ok(ips)
    }

    /// The words for a shortfall, as things stand now.
    fn explain(&self, pool: &str, service: &AllocService, shortfall: Shortfall) -> String {
        match (shortfall, self.pools.get(pool)) {
            (Shortfall::NoPool, _) | (_, None) => format!("pool {pool} does not exist"),
            (Shortfall::Missing(family), _) => format!("pool {pool} has no {family} addresses"),
            (Shortfall::Exhausted(family), Some(space)) => {
                let i = family.index();
                format!(
                    "pool {pool} exhausted ({}/{} {family} in use{})",
                    space.used[i],
                    space.capacity[i],
                    if service.sharing_key.is_some() {
                        ", none shareable"
                    } else {
                        ""
                    }
                )
            }
        }
    }
}

/// [`serves`] without the words: asked of every pinned pool for every Service.
fn serves_quietly(pool: &Pool, service: &AllocService) -> bool {
    let Some(a) = &pool.allocation else {
        return true;
    };
    let restricted = !a.namespaces.is_empty() || !a.namespace_selectors.is_empty();
    (!restricted || a.namespaces.contains(&service.key.namespace))
        && crate::config::any_matches(&a.service_selectors, &service.labels)
}

/// Why the pool's serviceAllocation keeps it from serving the Service, if it does.
pub fn allocation_refusal(pool: &Pool, service: &AllocService) -> Option<String> {
    serves(pool, service).err().map(|r| r.0)
}

/// Whether the pool's serviceAllocation lets it serve the Service.
fn serves(pool: &Pool, service: &AllocService) -> Result<(), Refusal> {
    if serves_quietly(pool, service) {
        return Ok(());
    }
    let Some(a) = &pool.allocation else {
        return Ok(());
    };
    let restricted = !a.namespaces.is_empty() || !a.namespace_selectors.is_empty();
    if restricted && !a.namespaces.contains(&service.key.namespace) {
        return Err(Refusal(format!(
            "pool {} serves only namespaces {} (serviceAllocation), not {}",
            pool.name,
            if a.namespaces.is_empty() {
                "matching its namespaceSelectors, of which there are none".to_string()
            } else {
                a.namespaces.iter().cloned().collect::<Vec<_>>().join(", ")
            },
            service.key.namespace
        )));
    }
    if !crate::config::any_matches(&a.service_selectors, &service.labels) {
        return Err(Refusal(format!(
            "pool {} serves only Services matching its serviceAllocation.serviceSelectors",
            pool.name
        )));
    }
    Ok(())
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted(ips: &[IpAddr]) -> String {
    use std::fmt::Write;
    let mut text = String::from("[");
    for (i, ip) in ips.iter().enumerate() {
        let _ = write!(text, "{}\"{ip}\"", if i == 0 { "" } else { ", " });
    }
    text.push(']');
    text
}

fn families(set: &BTreeSet<Family>) -> String {
    families_of(&set.iter().copied().collect::<Vec<_>>())
}

fn families_of(list: &[Family]) -> String {
    list.iter()
        .map(Family::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}
