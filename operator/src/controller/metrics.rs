//! The controller's Prometheus metrics, under MetalLB's names so existing dashboards and
//! alerts (`MetalLBAddressPoolExhausted`, `MetalLBStaleConfig`, …) keep working.
//!
//! Label values are bounded: the only label is `pool`, and a pool's series disappear with it.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::alloc::PoolUsage;
use crate::shell::runtime::DaemonMetrics;

/// The `pool` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PoolLabel {
    /// The IPAddressPool's name.
    pub pool: String,
}

type PoolGauge = Family<PoolLabel, Gauge<f64, AtomicU64>>;

/// Every metric the controller exports.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    addresses: PoolGauge,
    addresses_v4: PoolGauge,
    addresses_v6: PoolGauge,
    in_use: PoolGauge,
    in_use_v4: PoolGauge,
    in_use_v6: PoolGauge,
    /// The Kubernetes client metrics.
    pub client: crate::shell::metrics::ClientMetrics,
}

impl DaemonMetrics for Metrics {
    fn register(&self, registry: &mut Registry) {
        let pool_gauges = [
            (
                "metallb_allocator_addresses_total",
                "Number of usable IP addresses, per pool",
                &self.addresses,
            ),
            (
                "metallb_allocator_ipv4_addresses_total",
                "Number of usable IPv4 addresses, per pool",
                &self.addresses_v4,
            ),
            (
                "metallb_allocator_ipv6_addresses_total",
                "Number of usable IPv6 addresses, per pool",
                &self.addresses_v6,
            ),
            (
                "metallb_allocator_addresses_in_use_total",
                "Number of IP addresses in use, per pool",
                &self.in_use,
            ),
            (
                "metallb_allocator_ipv4_addresses_in_use_total",
                "Number of IPv4 addresses in use, per pool",
                &self.in_use_v4,
            ),
            (
                "metallb_allocator_ipv6_addresses_in_use_total",
                "Number of IPv6 addresses in use, per pool",
                &self.in_use_v6,
            ),
        ];
        for (name, help, family) in pool_gauges {
            registry.register(name, help, family.clone());
        }
        self.client.register(registry);
    }
}

impl Metrics {
    /// Sets the pool gauges to `usage`; pools no longer present lose their series.
    pub(crate) fn set_usage(&self, usage: &BTreeMap<String, PoolUsage>) {
        for family in [
            &self.addresses,
            &self.addresses_v4,
            &self.addresses_v6,
            &self.in_use,
            &self.in_use_v4,
            &self.in_use_v6,
        ] {
            family.clear();
        }
        for (pool, u) in usage {
            let label = PoolLabel { pool: pool.clone() };
            #[allow(clippy::cast_precision_loss)] // gauges are f64; pool sizes beyond 2^53 round
            let set = |family: &PoolGauge, n: u128| {
                family.get_or_create(&label).set(n as f64);
            };
            let total_v4 = u.assigned_ipv4 + u.available_ipv4;
            let total_v6 = u.assigned_ipv6.saturating_add(u.available_ipv6);
            set(&self.addresses, total_v4.saturating_add(total_v6));
            set(&self.addresses_v4, total_v4);
            set(&self.addresses_v6, total_v6);
            set(&self.in_use, u.assigned_ipv4 + u.assigned_ipv6);
            set(&self.in_use_v4, u.assigned_ipv4);
            set(&self.in_use_v6, u.assigned_ipv6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(metrics: &Metrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn pool_gauges_use_metallb_names_and_drop_vanished_pools() {
        let metrics = Metrics::default();
        let mut usage = BTreeMap::new();
        usage.insert(
            "prod".to_string(),
            PoolUsage {
                assigned_ipv4: 3,
                available_ipv4: 251,
                assigned_ipv6: 1,
                available_ipv6: 15,
            },
        );
        usage.insert("gone".to_string(), PoolUsage::default());
        metrics.set_usage(&usage);
        metrics.client.set_config(true, false);
        metrics.client.updates.inc();
        let text = encoded(&metrics);
        for line in [
            "metallb_allocator_addresses_total{pool=\"prod\"} 270.0",
            "metallb_allocator_ipv4_addresses_total{pool=\"prod\"} 254.0",
            "metallb_allocator_ipv6_addresses_total{pool=\"prod\"} 16.0",
            "metallb_allocator_addresses_in_use_total{pool=\"prod\"} 4.0",
            "metallb_allocator_ipv4_addresses_in_use_total{pool=\"prod\"} 3.0",
            "metallb_allocator_ipv6_addresses_in_use_total{pool=\"prod\"} 1.0",
            "metallb_k8s_client_updates_total 1",
            "metallb_k8s_client_config_loaded_bool 1",
            "metallb_k8s_client_config_stale_bool 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        usage.remove("gone");
        metrics.set_usage(&usage);
        assert!(!encoded(&metrics).contains("gone"));
    }
}
