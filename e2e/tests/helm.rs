//! The Helm chart installed, upgraded and uninstalled with the pinned Helm 4 (`hack/k8s.sh`)
//! into a real control plane of the pinned Kubernetes release, as the README tells a user:
//!
//! - one `helm install` brings the CRDs (from the chart's `crds/`, established before the
//!   templates go in), the webhook configuration and the workloads; the user's configuration
//!   applies right after it, with the controller not running yet (`failurePolicy: Ignore`:
//!   an install never waits on its own webhook, MetalLB #3133);
//! - kube-controller-manager turns the Deployment into a ReplicaSet and its Pods (Pending:
//!   this control plane has no nodes);
//! - `helm upgrade` with a changed value changes the DaemonSet's pod template;
//! - `helm uninstall` removes every object the release made (its ReplicaSets and Pods go with
//!   them, by the garbage collector) and keeps the CRDs, the user's `metallb.io` objects and
//!   the namespace.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use ferrolb_e2e::control_plane::ControlPlane;
use ferrolb_e2e::kubectl::Kubectl;
use ferrolb_e2e::paths::{self, Scratch};
use ferrolb_e2e::process::wait_for;

const NS: &str = "metallb-system";

/// `helm ARGS` against the control plane, with Helm's own files kept in `home`.
fn helm(kubeconfig: &Path, home: &Path, args: &[&str]) -> Result<String> {
    ferrolb_e2e::helm::helm(kubeconfig, home, None, args)
}

fn names(list: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

#[test]
fn helm_installs_upgrades_and_uninstalls_the_chart_and_keeps_the_users_objects() -> Result<()> {
    let scratch = Scratch::new("helm")?;
    let plane = ControlPlane::start(None, scratch.path(), "127.0.0.1".parse()?)?;
    let kubeconfig = plane.kubeconfig();
    let kubectl = Kubectl::new(kubeconfig);
    let home = scratch.path().join("helm");
    let chart = paths::repo().join("deploy/charts/ferrolb");
    let chart = chart.to_string_lossy();

    helm(
        kubeconfig,
        &home,
        &["install", "ferrolb", &chart, "-n", NS, "--create-namespace"],
    )?;
    let crds = names(&kubectl.get(&["crd"])?);
    assert_eq!(crds.len(), 9, "{crds:?}");
    assert!(crds.iter().all(|c| c.ends_with(".metallb.io")), "{crds:?}");
    kubectl.get(&[
        "validatingwebhookconfiguration",
        "ferrolb-validating-webhook",
    ])?;
    kubectl.get(&["daemonset", "-n", NS, "speaker"])?;

    // The user's configuration goes in at once, with no controller to answer the webhook.
    kubectl.apply_repo_file("examples/lab/lab.yaml")?;
    let pools = names(&kubectl.get(&["ipaddresspools", "-n", NS])?);
    assert_eq!(pools, ["lab-bgp", "lab-bgp-v6", "lab-l2", "lab-l2-v6"]);

    // kube-controller-manager makes the controller's Pods (nobody runs them here).
    wait_for(
        "the controller Deployment's two Pods",
        Duration::from_secs(60),
        || {
            let pods = kubectl.get(&[
                "pods",
                "-n",
                NS,
                "-l",
                "app.kubernetes.io/component=controller",
            ])?;
            Ok((names(&pods).len() == 2).then_some(()))
        },
    )?;

    // An upgrade with a changed value reaches the speaker's pod template.
    helm(
        kubeconfig,
        &home,
        &[
            "upgrade",
            "ferrolb",
            &chart,
            "-n",
            NS,
            "--set",
            "logLevel=debug",
        ],
    )?;
    let ds = kubectl.get(&["daemonset", "-n", NS, "speaker"])?;
    assert!(ds.to_string().contains("debug"), "{ds}");
    let history = helm(kubeconfig, &home, &["history", "ferrolb", "-n", NS])?;
    assert!(history.lines().count() >= 3, "{history}");

    helm(kubeconfig, &home, &["uninstall", "ferrolb", "-n", NS])?;
    for kind in [
        "deployments",
        "daemonsets",
        "services",
        "serviceaccounts",
        "roles",
        "rolebindings",
        "poddisruptionbudgets",
    ] {
        let left: Vec<String> = names(&kubectl.get(&[kind, "-n", NS])?)
            .into_iter()
            .filter(|n| n != "default" && n != "kube-root-ca.crt")
            .collect();
        assert!(left.is_empty(), "{kind} left after uninstall: {left:?}");
    }
    let roles: Vec<String> = names(&kubectl.get(&["clusterroles"])?)
        .into_iter()
        .filter(|n| n.starts_with("ferrolb"))
        .collect();
    assert!(roles.is_empty(), "{roles:?}");
    assert!(
        kubectl
            .get(&[
                "validatingwebhookconfiguration",
                "ferrolb-validating-webhook"
            ])
            .is_err()
    );
    wait_for(
        "the garbage collector to remove the controller's Pods",
        Duration::from_secs(60),
        || {
            let pods = kubectl.get(&["pods", "-n", NS])?;
            let replicasets = kubectl.get(&["replicasets", "-n", NS])?;
            Ok((names(&pods).is_empty() && names(&replicasets).is_empty()).then_some(()))
        },
    )?;
    // Kept: the CRDs, the user's objects, the namespace.
    assert_eq!(names(&kubectl.get(&["crd"])?).len(), 9);
    assert_eq!(names(&kubectl.get(&["ipaddresspools", "-n", NS])?), pools);
    kubectl.get(&["namespace", NS])?;
    Ok(())
}
