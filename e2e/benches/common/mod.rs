//! What the benchmarks on the lab that create Services in bulk share: the Services and their
//! EndpointSlices, the API from the control plane's namespace, the router's FIB as `ip
//! monitor` reports it, and process memory.

pub(crate) mod api;

use std::path::Path;

use anyhow::{Context, Result};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use serde_json::json;

use ferrolb_e2e::lab;
use ferrolb_e2e::netns::Netns;
use ferrolb_e2e::sampler::RouteMonitor;

/// The namespace the Services are made in.
pub(crate) const NAMESPACE: &str = "bench";

pub(crate) use ferrolb_e2e::sampler::percentile;

pub(crate) fn service(name: &str, ip: Option<&str>) -> Result<Service> {
    let mut annotations = serde_json::Map::new();
    if let Some(ip) = ip {
        annotations.insert("metallb.io/loadBalancerIPs".into(), json!(ip));
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": name},
            "ports": [{"port": 80, "protocol": "TCP"}]
        }
    }))?)
}

/// The harness's EndpointSlice for Service `name` (there are no pods): ready endpoints on
/// both nodes, under a `managed-by` of its own so kube-controller-manager leaves it alone.
pub(crate) fn endpoints(name: &str, i: usize) -> Result<EndpointSlice> {
    let (a, b) = (i / 250, i % 250 + 1);
    let ready = json!({"ready": true, "serving": true, "terminating": false});
    Ok(serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(name),
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": "e2e.ferrolb.io"
            }
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [format!("10.244.{a}.{b}")], "nodeName": "n1", "conditions": ready},
            {"addresses": [format!("10.245.{a}.{b}")], "nodeName": "n2", "conditions": ready}
        ],
        "ports": [{"port": 80, "protocol": "TCP"}]
    }))?)
}

pub(crate) fn slice_name(service: &str) -> String {
    format!("{service}-bench")
}

/// Runs `work` with API handles on EndpointSlices and Services in the bench namespace, on a thread
/// that has entered the control plane's network namespace (where the API server's address is
/// reachable), on a runtime of its own.
pub(crate) fn with_api<T, F, Fut>(kubeconfig: &Path, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Api<EndpointSlice>, Api<Service>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
{
    api::with_client(&lab::ns("cp"), kubeconfig, |client| {
        work(
            Api::namespaced(client.clone(), NAMESPACE),
            Api::namespaced(client, NAMESPACE),
        )
    })
}

/// The lab router's routes in FIB, as `ip monitor route` reports them.
pub(crate) fn monitor() -> Result<RouteMonitor> {
    RouteMonitor::start(&lab::ns("rtr"))
}

pub(crate) fn bgp_routes(router: &Netns) -> Result<usize> {
    Ok(router
        .ip(&["route", "show", "proto", "bgp"])?
        .lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .count())
}

pub(crate) fn memory(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} for {pid}"))?;
        let kib: f64 = line
            .split_whitespace()
            .nth(1)
            .context("malformed status")?
            .parse()?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Creates Services `bulk-0` … `bulk-{count - 1}`, each with its EndpointSlice (ready on both
/// nodes), 32 requests at a time; the IPs come from the pools that assign automatically.
pub(crate) fn create_bulk(kubeconfig: &Path, count: usize) -> Result<()> {
    with_api(kubeconfig, move |eps, svcs| async move {
        futures::stream::iter(0..count)
            .map(|i| {
                let (eps, svcs) = (eps.clone(), svcs.clone());
                async move {
                    let name = format!("bulk-{i}");
                    eps.create(&PostParams::default(), &endpoints(&name, i)?)
                        .await?;
                    svcs.create(&PostParams::default(), &service(&name, None)?)
                        .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<()>>()
            .await?;
        anyhow::Ok(())
    })
}
