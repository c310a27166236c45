//! One pool's address space as the allocator scans it: blocks in entry order, a hint per
//! block below which nothing is free, and per-family counts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::service::Family;
use crate::config::{Pool, is_buggy};

/// A block of consecutive addresses of one family.
#[derive(Clone, Debug)]
pub(super) struct Block {
    pub family: Family,
    pub first: u128,
    pub last: u128,
}

/// A pool and the allocator's bookkeeping for it.
#[derive(Clone, Debug)]
pub(super) struct PoolSpace {
    pub pool: Pool,
    /// The pool's name, shared by every record of its IPs.
    pub name: std::sync::Arc<str>,
    pub blocks: Vec<Block>,
    /// Per block: every address below the hint is in use or skipped.
    pub hints: Vec<u128>,
    /// Usable addresses per family (avoidBuggyIPs applied).
    pub capacity: [u128; 2],
    /// Addresses in use per family.
    pub used: [u128; 2],
}

impl PoolSpace {
    pub(super) fn new(pool: &Pool) -> PoolSpace {
        let blocks: Vec<Block> = pool
            .cidrs()
            .map(|c| match c {
                IpNet::V4(n) => Block {
                    family: Family::V4,
                    first: u128::from(u32::from(n.network())),
                    last: u128::from(u32::from(n.broadcast())),
                },
                IpNet::V6(n) => Block {
                    family: Family::V6,
                    first: u128::from(n.network()),
                    last: u128::from(n.broadcast()),
                },
            })
            .collect();
        let mut capacity = [0u128; 2];
        for b in &blocks {
            let size = b.last - b.first + 1;
            let skipped = if pool.avoid_buggy_ips && b.family == Family::V4 {
                buggy_up_to(b.last) - b.first.checked_sub(1).map_or(0, buggy_up_to)
            } else {
                0
            };
            capacity[b.family.index()] = capacity[b.family.index()].saturating_add(size - skipped);
        }
        PoolSpace {
            pool: pool.clone(),
            name: std::sync::Arc::from(pool.name.as_str()),
            hints: blocks.iter().map(|b| b.first).collect(),
            blocks,
            capacity,
            used: [0, 0],
        }
    }

    /// Whether the pool has addresses of the family at all.
    pub(super) fn has(&self, family: Family) -> bool {
        self.capacity[family.index()] > 0
    }

    /// The block holding `ip`, if any (and the address is usable under avoidBuggyIPs).
    pub(super) fn block_of(&self, ip: IpAddr) -> Option<usize> {
        if self.pool.avoid_buggy_ips && is_buggy(ip) {
            return None;
        }
        let (family, value) = number(ip);
        self.blocks
            .iter()
            .position(|b| b.family == family && b.first <= value && value <= b.last)
    }

    /// The first usable address of `family` in scan order for which `taken` is false:
    /// blocks in entry order, each from its lowest address up. Moves the hints forward.
    pub(super) fn first_free(
        &mut self,
        family: Family,
        taken: impl Fn(IpAddr) -> bool,
    ) -> Option<(usize, IpAddr)> {
        for (i, block) in self.blocks.iter().enumerate() {
            if block.family != family {
                continue;
            }
            let mut value = self.hints[i];
            while value <= block.last {
                let ip = address(family, value);
                let skipped = self.pool.avoid_buggy_ips && is_buggy(ip);
                if !skipped && !taken(ip) {
                    self.hints[i] = value;
                    return Some((i, ip));
                }
                if value == u128::MAX {
                    break;
                }
                value += 1;
            }
            self.hints[i] = value;
        }
        None
    }

    /// An address of the pool was freed: the scan must look at it again.
    pub(super) fn freed(&mut self, ip: IpAddr) {
        let (family, value) = number(ip);
        for (i, b) in self.blocks.iter().enumerate() {
            if b.family == family && b.first <= value && value <= b.last {
                self.hints[i] = self.hints[i].min(value);
            }
        }
    }

    /// Addresses of `family` still free.
    pub(super) fn available(&self, family: Family) -> u128 {
        self.capacity[family.index()] - self.used[family.index()]
    }
}

/// How many addresses in `0..=n` end in .0 or .255.
fn buggy_up_to(n: u128) -> u128 {
    (n / 256 + 1) + (n + 1) / 256
}

/// The family and numeric value of an address.
pub(super) fn number(ip: IpAddr) -> (Family, u128) {
    match ip {
        IpAddr::V4(a) => (Family::V4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (Family::V6, u128::from(a)),
    }
}

fn address(family: Family, value: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX))),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buggy_addresses_are_counted_exactly() {
        let count = |first: u128, last: u128| {
            buggy_up_to(last) - first.checked_sub(1).map_or(0, buggy_up_to)
        };
        let brute = |first: u128, last: u128| {
            (first..=last)
                .filter(|v| matches!(v % 256, 0 | 255))
                .count() as u128
        };
        for (first, last) in [
            (0, 0),
            (0, 255),
            (1, 254),
            (255, 256),
            (10, 1000),
            (256, 511),
        ] {
            assert_eq!(count(first, last), brute(first, last), "{first}..={last}");
        }
    }
}
