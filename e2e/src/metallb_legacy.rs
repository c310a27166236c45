//! MetalLB v0.12.1, the last release configured by its ConfigMap, on the chart lab's real
//! nodes, and the switch from it to ferrolb through `ferrolb convert`. Its controller and
//! speaker are built from the Go module pinned in `hack/tools/metallb-legacy`
//! (`hack/metallb.sh build-legacy`), put in images named as they were published, and
//! installed from the release's own `manifests/` as its documentation told: `namespace.yaml`,
//! `metallb.yaml`, and a ConfigMap `config` in `metallb-system`. Nothing of it is part of
//! ferrolb.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::chart_lab::{self, ChartLab, NS};
use crate::image;
use crate::kubectl::Kubectl;
use crate::metallb;
use crate::paths;
use crate::process::run_with_input;

/// The directory `hack/metallb.sh build-legacy` prints (`bin/`, `manifests/`, `version`), or
/// `FERROLB_METALLB_LEGACY_DIR` when set.
pub fn built() -> Result<PathBuf> {
    paths::built_with("metallb.sh", "build-legacy", "FERROLB_METALLB_LEGACY_DIR")
}

/// The release's version (`v0.12.1`).
pub fn version(built: &Path) -> Result<String> {
    let path = built.join("version");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

/// The chart lab's cluster with MetalLB v0.12's images and ferrolb's imported, and nothing
/// installed.
pub fn lab(prefix: &str, dir: &Path, built: &Path) -> Result<ChartLab> {
    let version = version(built)?;
    let mut all = chart_lab::chart_images(dir)?;
    for name in ["controller", "speaker"] {
        let archive = dir.join(format!("metallb-legacy-{name}.tar"));
        metallb::component_image(built, name, &version, &[]).write(&archive)?;
        all.push(archive);
    }
    ChartLab::without_chart(prefix, dir, &all)
}

/// The lab's MetalLB configuration in the legacy ConfigMap's format: the ToR as peer, a BGP
/// pool (with the community the lab's BGP manifests give) and a layer-2 pool, the addresses
/// of [`chart_lab::bgp_manifests`] and [`chart_lab::l2_manifests`].
pub const CONFIG: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  namespace: metallb-system
  name: config
data:
  config: |
    peers:
    - peer-address: 10.95.0.1
      peer-asn: 64513
      my-asn: 64512
    address-pools:
    - name: bgp
      protocol: bgp
      addresses:
      - 10.94.0.0/28
      bgp-advertisements:
      - communities: [64512:100]
    - name: l2
      protocol: layer2
      addresses:
      - 10.95.0.200-10.95.0.209
";

/// The demo pods of `web`, Service `web` in the layer-2 pool and Service `routed` in the BGP
/// pool, each chosen with the annotation MetalLB v0.12 reads.
pub fn services() -> String {
    let service = |name: &str, pool: &str| {
        format!(
            "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default, annotations: {{metallb.universe.tf/address-pool: {pool}}}}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
"
        )
    };
    format!(
        "{}{}{}",
        service("web", "l2"),
        service("routed", "bgp"),
        image::demo_workload("web", Some(2))
    )
}

/// The documents of the release's `manifests/metallb.yaml` the API server serves: all but
/// the PodSecurityPolicies (`policy/v1beta1`, removed in Kubernetes 1.25), as a user of a
/// current cluster applies it.
fn served_manifests(built: &Path) -> Result<String> {
    let path = built.join("manifests/metallb.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let kept: Vec<&str> = text
        .split("\n---\n")
        .filter(|doc| !doc.lines().any(|l| l == "kind: PodSecurityPolicy"))
        .collect();
    Ok(kept.join("\n---\n"))
}

/// Installs MetalLB v0.12 as its documentation told (`namespace.yaml`, `metallb.yaml`, the
/// ConfigMap [`CONFIG`]) with [`services`]; returns once its pods are all Ready (its
/// controller makes the memberlist secret its speakers wait for).
pub fn install(lab: &ChartLab, built: &Path) -> Result<()> {
    let kubectl = lab.cluster.kubectl();
    let namespace = built.join("manifests/namespace.yaml");
    kubectl.run(&["apply", "-f", &namespace.to_string_lossy()], None)?;
    kubectl.apply(&served_manifests(built)?)?;
    kubectl.apply(CONFIG)?;
    kubectl.apply(&services())?;
    let pods = lab.cluster.names().len() + 1;
    chart_lab::all_ready(kubectl, "MetalLB", pods, Duration::from_secs(180))
}

/// `ferrolb convert -f -` of `legacy` (a ConfigMap as `kubectl get -o yaml` prints it).
pub fn convert(legacy: &str) -> Result<String> {
    let mut command = Command::new(paths::ferrolb()?);
    command.args(["convert", "-f", "-"]);
    run_with_input(&mut command, Some(legacy), "ferrolb convert")
}

/// The README's switch from MetalLB v0.12, node by node: its ConfigMap read back and
/// converted (`ferrolb convert`); ferrolb's CRDs and the converted objects applied; MetalLB's
/// speaker DaemonSet deleted with its pods left running, and its controller deleted (the IPs
/// stay in the Services' status); ferrolb installed, taking over the ServiceAccounts, Role and
/// RoleBinding named as MetalLB's (`--take-ownership`, and `--force-conflicts` for the fields
/// `kubectl apply` set in the Role and RoleBinding); node by node, MetalLB's speaker pod
/// deleted and ferrolb's announcing from the node before the next; MetalLB's other objects
/// deleted. Returns when `helm install ferrolb` ran.
pub fn hand_over(lab: &ChartLab, bgp_ip: &str) -> Result<Instant> {
    let kubectl = lab.cluster.kubectl();
    let began = Instant::now();
    let step = |what: &str| println!("hand-over +{} ms: {what}", began.elapsed().as_millis());
    let legacy = kubectl.run(
        &["get", "configmap", "config", "-n", NS, "-o", "yaml"],
        None,
    )?;
    let converted = convert(&legacy)?;
    let crds = paths::repo().join("deploy/charts/ferrolb/crds");
    kubectl.apply_crds(&crds, Duration::from_secs(60))?;
    kubectl.apply(&converted)?;
    step("ConfigMap converted, ferrolb's CRDs and the objects applied");
    kubectl.run(
        &[
            "delete",
            "daemonset",
            "speaker",
            "-n",
            NS,
            "--cascade=orphan",
        ],
        None,
    )?;
    kubectl.run(&["delete", "deployment", "controller", "-n", NS], None)?;
    step("MetalLB's speakers orphaned, its controller deleted");
    let installing = Instant::now();
    chart_lab::helm_install_with(
        |args| lab.helm(args),
        &["--take-ownership", "--force-conflicts"],
    )?;
    step("ferrolb installed");
    metallb::node_by_node(lab, bgp_ip, "app=metallb,component=speaker", &step)?;
    remove_leftovers(kubectl)?;
    step("MetalLB's other objects deleted");
    Ok(installing)
}

/// What is left of MetalLB v0.12 once ferrolb took over its ServiceAccounts, Role and
/// RoleBinding: its cluster roles and their bindings, the Roles and RoleBindings of its
/// speaker and config watcher, the memberlist secret and the ConfigMap.
fn remove_leftovers(kubectl: &Kubectl) -> Result<()> {
    kubectl.run(
        &[
            "delete",
            "clusterrole,clusterrolebinding",
            "metallb-system:controller",
            "metallb-system:speaker",
        ],
        None,
    )?;
    kubectl.run(
        &[
            "delete",
            "role,rolebinding",
            "-n",
            NS,
            "config-watcher",
            "pod-lister",
        ],
        None,
    )?;
    kubectl.run(
        &["delete", "-n", NS, "secret/memberlist", "configmap/config"],
        None,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pod_security_policies_are_left_out() {
        let dir = std::env::temp_dir().join(format!("ferrolb-legacy-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("manifests")).unwrap();
        std::fs::write(
            dir.join("manifests/metallb.yaml"),
            "apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\nmetadata: {name: a}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: b}\n---\n\
             apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: c}\n",
        )
        .unwrap();
        let kept = served_manifests(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!kept.contains("PodSecurityPolicy"), "{kept}");
        assert!(kept.contains("kind: ServiceAccount") && kept.contains("kind: DaemonSet"));
    }
}
