//! What a campaign watches while it runs: the ToR's kernel FIB, polled every 200 ms, every
//! next hop that goes away recorded as a withdrawal (judged against the faults and changes
//! that excuse it at the next quiet period); and the Services' IPs, every 2 s, against the
//! sharing rules and the pools.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Shared, Withdrawal};
use crate::lab::{self, NET6, NODES};
use crate::netns::Netns;

/// A router's kernel routes: prefix (an address, for host routes) to the nodes (or, for a
/// gateway that is no node, the gateway) it forwards to.
pub type Fib = BTreeMap<String, BTreeSet<String>>;

/// Every address a node's routes may name as their gateway (IPv4, IPv6, link-local) to the
/// node's name.
pub fn gateways() -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for (name, address) in NODES {
        map.insert(address.to_string(), name.to_string());
        let suffix = address.rsplit('.').next().unwrap_or_default();
        map.insert(format!("{NET6}{suffix}"), name.to_string());
        let text = Netns::attach(&lab::ns(name))
            .ip(&["-6", "-j", "addr", "show", "dev", "eth0", "scope", "link"])?;
        let links: Value = serde_json::from_str(&text)?;
        for info in links[0]["addr_info"].as_array().into_iter().flatten() {
            if let Some(local) = info["local"].as_str() {
                map.insert(local.to_string(), name.to_string());
            }
        }
    }
    Ok(map)
}

/// The routes of protocol `proto` (`bgp`, `bird`) in namespace `netns`'s kernel, both
/// families.
pub fn fib(netns: &str, proto: &str, gateways: &BTreeMap<String, String>) -> Result<Fib> {
    let ns = Netns::attach(netns);
    let mut fib = Fib::new();
    for family in ["-4", "-6"] {
        let text = ns.ip(&[family, "-j", "route", "show", "proto", proto])?;
        let routes: Value = serde_json::from_str(if text.trim().is_empty() { "[]" } else { &text })
            .with_context(|| format!("ip route in {netns}: {text}"))?;
        for route in routes.as_array().into_iter().flatten() {
            let Some(dst) = route["dst"].as_str() else {
                continue;
            };
            let dst = dst
                .trim_end_matches("/32")
                .trim_end_matches("/128")
                .to_string();
            let hops: Vec<&str> = match route["nexthops"].as_array() {
                Some(hops) => hops.iter().filter_map(|h| h["gateway"].as_str()).collect(),
                None => route["gateway"].as_str().into_iter().collect(),
            };
            let entry = fib.entry(dst).or_default();
            for hop in hops {
                entry.insert(
                    gateways
                        .get(hop)
                        .cloned()
                        .unwrap_or_else(|| hop.to_string()),
                );
            }
        }
    }
    Ok(fib)
}

/// Polls the ToR's FIB every 200 ms until `stop`, recording each next hop that disappears.
pub fn monitor(
    shared: Arc<Mutex<Shared>>,
    gateways: BTreeMap<String, String>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let tor = lab::ns("rtr");
        let mut before: Option<Fib> = None;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(now) = fib(&tor, "bgp", &gateways) {
                if let Some(before) = &before {
                    let at = Instant::now();
                    let mut shared = shared.lock().expect("shared");
                    for (prefix, hops) in before {
                        let left = now.get(prefix);
                        for node in hops.iter().filter(|n| left.is_none_or(|l| !l.contains(*n))) {
                            shared.withdrawals.push(Withdrawal {
                                at,
                                prefix: prefix.clone(),
                                node: node.clone(),
                            });
                        }
                    }
                }
                before = Some(now);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// An address range of a pool: a CIDR or `FIRST-LAST`.
pub fn in_range(range: &str, ip: IpAddr) -> bool {
    fn wide(ip: IpAddr) -> (bool, u128) {
        match ip {
            IpAddr::V4(a) => (false, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, u128::from(a)),
        }
    }
    let (six, value) = wide(ip);
    if let Some((first, last)) = range.split_once('-') {
        let (Ok(first), Ok(last)) = (first.trim().parse(), last.trim().parse()) else {
            return false;
        };
        let (f6, first) = wide(first);
        let (l6, last) = wide(last);
        return f6 == six && l6 == six && first <= value && value <= last;
    }
    let Some((base, len)) = range.split_once('/') else {
        return false;
    };
    let (Ok(base), Ok(len)) = (base.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    let (b6, base) = wide(base);
    let bits = if six { 128 } else { 32 };
    if b6 != six || len > bits {
        return false;
    }
    let host = bits - len;
    let mask = if host >= 128 {
        0
    } else {
        !((1_u128 << host) - 1)
    };
    base & mask == value & mask
}

/// A LoadBalancer Service as the sharing rules see it.
struct Holder {
    key: String,
    share: Option<String>,
    ports: BTreeSet<(i64, String)>,
    local: bool,
    selector: Value,
}

/// Whether two Services may hold the same IP (MetalLB's rules): the same sharing key,
/// ports apart, and both `Cluster` or the same pods.
fn may_share(a: &Holder, b: &Holder) -> bool {
    let same_key = a.share.is_some() && a.share == b.share;
    let ports_apart = a.ports.is_disjoint(&b.ports);
    let same_pods = (!a.local && !b.local) || a.selector == b.selector;
    same_key && ports_apart && same_pods
}

/// Checks the Services' IPs once: no IP held by two Services that may not share it, and
/// (once the pools have been still for `grace`) none outside the pools.
pub fn check_allocations(services: &Value, shared: &Arc<Mutex<Shared>>, grace: Duration) {
    let mut by_ip: BTreeMap<String, Vec<Holder>> = BTreeMap::new();
    for s in services["items"].as_array().into_iter().flatten() {
        if s["spec"]["type"] != "LoadBalancer" {
            continue;
        }
        let key = format!(
            "{}/{}",
            s["metadata"]["namespace"].as_str().unwrap_or_default(),
            s["metadata"]["name"].as_str().unwrap_or_default()
        );
        for ip in lab::ingress_ips(s) {
            by_ip.entry(ip.to_string()).or_default().push(Holder {
                key: key.clone(),
                share: s["metadata"]["annotations"]["metallb.io/allow-shared-ip"]
                    .as_str()
                    .map(str::to_string),
                ports: s["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        (
                            p["port"].as_i64().unwrap_or_default(),
                            p["protocol"].as_str().unwrap_or("TCP").to_string(),
                        )
                    })
                    .collect(),
                local: s["spec"]["externalTrafficPolicy"] == "Local",
                selector: s["spec"]["selector"].clone(),
            });
        }
    }
    let mut shared = shared.lock().expect("shared");
    let now = Instant::now();
    let pools_still = now.duration_since(shared.config_event) >= grace;
    for (ip, holders) in &by_ip {
        for (i, a) in holders.iter().enumerate() {
            for b in &holders[i + 1..] {
                if !may_share(a, b) {
                    shared.violate(
                        &format!("shared {ip} {} {}", a.key, b.key),
                        format!(
                            "{ip} is held by {} and {}, which may not share it",
                            a.key, b.key
                        ),
                    );
                }
            }
        }
        let Ok(address) = ip.parse::<IpAddr>() else {
            shared.violate(&format!("bad {ip}"), format!("{ip} is not an IP address"));
            continue;
        };
        let pooled = shared
            .pools
            .values()
            .flatten()
            .any(|range| in_range(range, address));
        if !pooled && pools_still {
            let still = now.duration_since(shared.config_event).as_secs_f64();
            let who: Vec<&str> = holders.iter().map(|h| h.key.as_str()).collect();
            shared.violate(
                &format!("outside {ip}"),
                format!(
                    "{ip} (held by {}) is in no pool, {still:.0} s after the pools last changed",
                    who.join(", ")
                ),
            );
        }
    }
}

/// Reads the Services every 2 s until `stop` and checks their IPs
/// ([`check_allocations`]); a read that fails (the API server is down) is skipped.
pub fn allocations(
    dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
    grace: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let kubectl = lab::kubectl(Path::new(&dir));
        while !stop.load(Ordering::Relaxed) {
            if let Ok(services) = kubectl.get(&["--request-timeout=5s", "services", "-A"]) {
                check_allocations(&services, &shared, grace);
            }
            for _ in 0..10 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_hold_what_they_name_and_nothing_else() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_range("10.97.0.16/28", ip("10.97.0.31")));
        assert!(!in_range("10.97.0.16/28", ip("10.97.0.32")));
        assert!(!in_range("10.97.0.16/28", ip("10.97.0.15")));
        assert!(in_range("10.99.0.220-10.99.0.229", ip("10.99.0.229")));
        assert!(!in_range("10.99.0.220-10.99.0.229", ip("10.99.0.230")));
        assert!(in_range("fd98::/124", ip("fd98::f")));
        assert!(!in_range("fd98::/124", ip("fd98::10")));
        assert!(!in_range("fd98::/124", ip("10.0.0.1")));
        assert!(in_range("0.0.0.0/0", ip("192.0.2.1")));
        assert!(!in_range("10.97.300.0/24", ip("10.97.0.1")));
    }

    fn holder(share: Option<&str>, port: i64, local: bool) -> Holder {
        Holder {
            key: "x".into(),
            share: share.map(str::to_string),
            ports: [(port, "TCP".to_string())].into(),
            local,
            selector: Value::Null,
        }
    }

    #[test]
    fn sharing_takes_one_key_other_ports_and_the_same_pods() {
        assert!(may_share(
            &holder(Some("k"), 80, false),
            &holder(Some("k"), 443, false)
        ));
        assert!(!may_share(
            &holder(Some("k"), 80, false),
            &holder(Some("k"), 80, false)
        ));
        assert!(!may_share(
            &holder(Some("k"), 80, false),
            &holder(Some("j"), 443, false)
        ));
        assert!(!may_share(
            &holder(None, 80, false),
            &holder(None, 443, false)
        ));
        let mut a = holder(Some("k"), 80, true);
        let mut b = holder(Some("k"), 443, true);
        a.selector = serde_json::json!({"app": "a"});
        b.selector = serde_json::json!({"app": "b"});
        assert!(!may_share(&a, &b));
        b.selector = a.selector.clone();
        assert!(may_share(&a, &b));
    }
}
