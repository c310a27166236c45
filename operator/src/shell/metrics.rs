//! The `metallb_k8s_client_*` metrics, exported by the controller and every speaker under
//! MetalLB's names.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `metallb_k8s_client_*` metrics every component exports.
#[derive(Debug, Default)]
pub(crate) struct ClientMetrics {
    /// Watch events processed.
    pub updates: Counter,
    /// Writes to the API that failed.
    pub update_errors: Counter,
    config_loaded: Gauge,
    config_stale: Gauge,
}

impl ClientMetrics {
    /// Registers the metrics in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "metallb_k8s_client_updates",
            "Number of Kubernetes object updates processed",
            self.updates.clone(),
        );
        registry.register(
            "metallb_k8s_client_update_errors",
            "Number of Kubernetes writes that failed",
            self.update_errors.clone(),
        );
        registry.register(
            "metallb_k8s_client_config_loaded_bool",
            "1 if a configuration has been loaded since start",
            self.config_loaded.clone(),
        );
        registry.register(
            "metallb_k8s_client_config_stale_bool",
            "1 if the configuration in force is older than the objects in the cluster because the \
             newest is invalid",
            self.config_stale.clone(),
        );
    }

    /// Records whether a configuration is in force and whether it is stale.
    pub(crate) fn set_config(&self, loaded: bool, stale: bool) {
        self.config_loaded.set(i64::from(loaded));
        self.config_stale.set(i64::from(stale));
    }
}
