//! The lab's nodes as real Kubernetes nodes, as `hack/lab.sh up` runs them: containerd,
//! kubelet and kube-proxy in each node's namespace ([`crate::kubenode`]), ferrolb installed
//! by `helm install` with the chart's default values (its image made from `deploy/image/`
//! and imported into each node's containerd under the chart's reference), and the demo
//! backend behind the lab's Services, so the client's requests are answered by pods.
//!
//! The backends sit where the process lab's EndpointSlices put its endpoints
//! ([`super::ENDPOINTS`]): `web` on both nodes, `api` (`externalTrafficPolicy: Local`) on
//! n1, `printer` on n2.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CONTROL_PLANE, NET6, NODES};
use crate::image;
use crate::kubectl::Kubectl;
use crate::kubenode::{KubeNode, NodeSpec};
use crate::netns::Netns;
use crate::process::wait_for;

/// Node `i`'s pod CIDRs (IPv4, IPv6).
fn pod_cidrs(i: usize) -> (String, String) {
    (
        format!("10.244.{}.0/24", i + 1),
        format!("fd44:{}::/64", i + 1),
    )
}

/// A node the lab left running: what [`crate::kubenode::stop`] needs to end it.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's name (and cgroup).
    pub name: String,
    /// Its state directory.
    pub dir: PathBuf,
    /// kube-proxy, kubelet and containerd.
    pub pids: Vec<u32>,
}

/// Starts a kubelet node in each of `nodes` (the namespaces of [`NODES`], in order), with
/// routes to each other's pods (and the control plane's to theirs, for the webhook), and
/// waits until they are Ready.
pub fn start_nodes(
    dir: &Path,
    kubectl: &Kubectl,
    cp: &Netns,
    nodes: &[Netns],
    images: &[PathBuf],
) -> Result<Vec<KubeNode>> {
    // The API server calls the webhook over IPv4.
    for (i, (_, address)) in NODES.iter().enumerate() {
        cp.ip(&["route", "replace", &pod_cidrs(i).0, "via", address])?;
    }
    let images: Vec<&Path> = images.iter().map(PathBuf::as_path).collect();
    let mut started = Vec::new();
    for (i, ((name, address), ns)) in NODES.iter().zip(nodes).enumerate() {
        let mut routes = Vec::new();
        for (j, (_, other)) in NODES.iter().enumerate() {
            if j != i {
                let (v4, v6) = pod_cidrs(j);
                let suffix = other.rsplit('.').next().unwrap_or_default();
                routes.push((v4, other.to_string()));
                routes.push((v6, format!("{NET6}{suffix}")));
            }
        }
        let (v4, v6) = pod_cidrs(i);
        let suffix = address.rsplit('.').next().unwrap_or_default();
        let spec = NodeSpec {
            name: name.to_string(),
            address: address.to_string(),
            address6: Some(format!("{NET6}{suffix}")),
            pod_cidr: v4,
            pod_cidr6: Some(v6),
            gateway: CONTROL_PLANE.to_string(),
            routes,
        };
        started.push(KubeNode::start(
            ns,
            &spec,
            &dir.join(name),
            &dir.join("cp"),
            &images,
        )?);
    }
    let names: Vec<&str> = NODES.iter().map(|(name, _)| *name).collect();
    if let Err(error) = crate::kubenode::wait_ready(kubectl, &names, Duration::from_secs(90)) {
        bail!("{error:#}\nkubelet log:\n{}", started[0].kubelet_tail(30));
    }
    Ok(started)
}

/// `helm install ferrolb deploy/charts/ferrolb -n metallb-system --create-namespace` with
/// the default values, run in the control plane's namespace with Helm's files in
/// `dir/helm`; waits until every ferrolb pod is Ready.
pub fn install_chart(dir: &Path, kubectl: &Kubectl, cp: &Netns) -> Result<()> {
    let helm = |args: &[&str]| {
        crate::helm::helm(
            &dir.join("cp/kubeconfig"),
            &dir.join("helm"),
            Some(cp),
            args,
        )
    };
    // A speaker per node and the chart's two controller replicas.
    crate::chart_lab::install_chart(kubectl, helm, NODES.len() + 2)
}

/// The demo backends behind the lab's Services, in namespace `shop`: a DaemonSet `web`
/// (Services `web` and `web6`), Deployment `api` on n1 and Deployment `printer` on n2
/// (Services `printer` and `printer6`).
pub fn backends() -> String {
    let shop = |workload: String| workload.replace("namespace: default", "namespace: shop");
    let (n1, n2) = (NODES[0].0, NODES[1].0);
    [
        shop(image::demo_workload("web", None)),
        shop(image::pinned(&image::demo_workload("api", Some(1)), n1)),
        shop(image::pinned(&image::demo_workload("printer", Some(1)), n2)),
    ]
    .join("---\n")
}

/// Waits until every pod of the backends is Ready.
pub fn wait_backends(kubectl: &Kubectl) -> Result<()> {
    wait_for("the demo backends Ready", Duration::from_secs(90), || {
        let (ready, total) = crate::chart_lab::ready_pods(kubectl, "shop")?;
        Ok((total == NODES.len() + 2 && ready == total).then_some(()))
    })?;
    Ok(())
}

/// For each LoadBalancer Service in `services` (a `kubectl get services -o json` list),
/// `tries` requests from the client to each of its IPs, and which pod on which node
/// answered.
pub fn answers(client: &Netns, services: &Value, tries: usize) -> Result<String> {
    let mut out =
        String::from("\nRequests from the client (which pod, on which node, answered):\n");
    for service in services["items"].as_array().into_iter().flatten() {
        if service["spec"]["type"] != "LoadBalancer" {
            continue;
        }
        let port = service["spec"]["ports"][0]["port"].as_u64().unwrap_or(80);
        let name = format!(
            "{}/{}",
            service["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default(),
            service["metadata"]["name"].as_str().unwrap_or_default()
        );
        for ip in super::ingress_ips(service) {
            let url = if ip.contains(':') {
                format!("http://[{ip}]:{port}/")
            } else {
                format!("http://{ip}:{port}/")
            };
            writeln!(out, "  {name}  {url}")?;
            for _ in 0..tries {
                let answer = client
                    .run("curl", &["-s", "-m", "1", &url])
                    .map(|a| a.trim().to_string())
                    .unwrap_or_default();
                if answer.is_empty() {
                    writeln!(out, "    (no answer)")?;
                } else {
                    writeln!(out, "    {answer}")?;
                }
            }
        }
    }
    Ok(out)
}
