//! How many datagrams the gossip port checks: a flood is dropped before its tags are
//! computed, so it costs the speaker little and the other senders are still heard.
//!
//! Each source address has a budget of [`PER_SOURCE`] datagrams a second (bursts of twice
//! that), and all sources together [`ALL`]. A speaker sends a few datagrams a second to each
//! other speaker (a probe every 300 ms to a random member, its answers, relayed probes), so a
//! source over its budget is not a speaker doing its work, and dropping its excess leaves the
//! others' datagrams alone. A flood from forged source addresses is held by the total budget:
//! it can then crowd out real datagrams, but not take the speaker's CPU.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Datagrams a second one source address may send.
pub const PER_SOURCE: u32 = 500;
/// Datagrams a second all sources together may send.
pub const ALL: u32 = 20_000;
/// Sources tracked at most; beyond, the idle are forgotten, then new ones share the total.
const SOURCES: usize = 4_096;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate) * 2.0,
            at: now,
        }
    }

    /// Takes one token if there is one, after refilling at `rate` a second up to twice it.
    fn take(&mut self, rate: u32, now: Instant) -> bool {
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate * 2.0);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The budgets of the gossip port.
#[derive(Debug)]
pub struct Budgets {
    per_source: HashMap<IpAddr, Bucket>,
    all: Bucket,
}

impl Budgets {
    /// Full budgets at `now`.
    pub fn new(now: Instant) -> Budgets {
        Budgets {
            per_source: HashMap::new(),
            all: Bucket::full(ALL, now),
        }
    }

    /// Whether a datagram from `from` arriving at `now` is within budget (and spends it).
    pub fn take(&mut self, from: IpAddr, now: Instant) -> bool {
        if self.per_source.len() >= SOURCES && !self.per_source.contains_key(&from) {
            // Sources idle for two seconds have full buckets again: nothing is lost.
            let idle = Duration::from_secs(2);
            self.per_source
                .retain(|_, bucket| now.saturating_duration_since(bucket.at) < idle);
        }
        let source_ok = if self.per_source.len() < SOURCES || self.per_source.contains_key(&from) {
            self.per_source
                .entry(from)
                .or_insert_with(|| Bucket::full(PER_SOURCE, now))
                .take(PER_SOURCE, now)
        } else {
            true
        };
        source_ok && self.all.take(ALL, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_flooding_source_is_cut_to_its_budget_and_the_others_are_still_heard() {
        let t0 = Instant::now();
        let mut budgets = Budgets::new(t0);
        let taken = (0..100_000)
            .filter(|_| budgets.take(ip("10.0.0.66"), t0))
            .count();
        assert_eq!(taken, 2 * PER_SOURCE as usize, "the burst");
        assert!(budgets.take(ip("10.0.0.2"), t0), "another source");
        // A second later, the flooder has one second's worth again.
        let t1 = t0 + Duration::from_secs(1);
        let taken = (0..100_000)
            .filter(|_| budgets.take(ip("10.0.0.66"), t1))
            .count();
        assert_eq!(taken, PER_SOURCE as usize);
        assert!(budgets.take(ip("10.0.0.2"), t1));
    }

    #[test]
    fn forged_sources_are_held_by_the_total_and_forgotten_when_idle() {
        let t0 = Instant::now();
        let mut budgets = Budgets::new(t0);
        let mut taken = 0;
        for i in 0..100_000u32 {
            let forged = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            taken += usize::from(budgets.take(forged, t0));
        }
        assert_eq!(taken, 2 * ALL as usize);
        assert!(budgets.per_source.len() <= SOURCES);
        // Later, a real speaker is heard and tracked again.
        let later = t0 + Duration::from_secs(3);
        assert!(budgets.take(ip("192.168.1.1"), later));
        assert!(budgets.per_source.contains_key(&ip("192.168.1.1")));
    }
}
