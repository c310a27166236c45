//! The plain install (`deploy/manifests/ferrolb.yaml`, rendered from the Helm chart by
//! `hack/chart.sh --write`) against a real control plane of the pinned Kubernetes
//! release (`hack/k8s.sh`, RBAC on): every object is accepted (the webhook configuration without a
//! caBundle: the controller sets it), and the RBAC grants each component what it uses and not
//! what it must not have. Nothing runs the pods: there are no nodes here.

use std::time::Duration;

use anyhow::Result;
use ferrolb_e2e::control_plane::ControlPlane;
use ferrolb_e2e::kubectl::Kubectl;
use ferrolb_e2e::paths::{self, Scratch};

const NS: &str = "metallb-system";

#[test]
fn the_plain_install_applies_and_grants_least_privilege() -> Result<()> {
    let scratch = Scratch::new("deploy")?;
    let plane = ControlPlane::start(None, scratch.path(), "127.0.0.1".parse()?)?;
    let kubectl = Kubectl::new(plane.kubeconfig());
    let text = std::fs::read_to_string(paths::repo().join("deploy/manifests/ferrolb.yaml"))?;
    let mut crds = String::new();
    let mut rest = String::new();
    for doc in text.split("\n---\n") {
        if doc.contains("\nkind: CustomResourceDefinition\n") {
            crds.push_str(&format!("---\n{doc}\n"));
        } else {
            rest.push_str(&format!("---\n{doc}\n"));
        }
    }
    // CRDs first, server-side as a user applies them, validated in full.
    let dir = scratch.path().join("crds");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("crds.yaml"), &crds)?;
    kubectl.apply_crds(&dir, Duration::from_secs(30))?;
    let list = kubectl.get(&["crd"])?;
    assert_eq!(list["items"].as_array().map_or(0, Vec::len), 9, "{list}");
    kubectl.apply(&rest)?;
    let ds = kubectl.get(&["daemonset", "-n", NS, "speaker"])?;
    let containers: Vec<&str> = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(containers, ["speaker", "frr"]);
    assert_eq!(ds["spec"]["template"]["spec"]["hostNetwork"], true);
    let deployment = kubectl.get(&["deployment", "-n", NS, "controller"])?;
    assert_eq!(deployment["spec"]["replicas"], 2);
    let webhook = kubectl.get(&[
        "validatingwebhookconfiguration",
        "ferrolb-validating-webhook",
    ])?;
    assert_eq!(
        webhook["webhooks"][0]["clientConfig"]["service"]["name"],
        "ferrolb-webhook"
    );
    assert!(webhook["webhooks"][0]["clientConfig"]["caBundle"].is_null());

    let controller = format!("system:serviceaccount:{NS}:controller");
    let speaker = format!("system:serviceaccount:{NS}:speaker");
    for (who, verb, resource, namespace, want) in [
        (&controller, "patch", "services/status", "shop", true),
        (&controller, "patch", "services", "shop", true),
        (&controller, "create", "events", "shop", true),
        (&controller, "watch", "ipaddresspools.metallb.io", NS, true),
        (
            &controller,
            "patch",
            "ipaddresspools.metallb.io/status",
            NS,
            true,
        ),
        (
            &controller,
            "update",
            "leases.coordination.k8s.io",
            NS,
            true,
        ),
        (&controller, "create", "secrets", NS, true),
        // Secured /metrics: who is calling, and may they read it.
        (
            &controller,
            "create",
            "tokenreviews.authentication.k8s.io",
            "",
            true,
        ),
        (
            &speaker,
            "create",
            "tokenreviews.authentication.k8s.io",
            "",
            true,
        ),
        (
            &speaker,
            "create",
            "subjectaccessreviews.authorization.k8s.io",
            "",
            true,
        ),
        // Only its own webhook configuration and certificate Secret, by name.
        (
            &controller,
            "update",
            "validatingwebhookconfigurations",
            "",
            false,
        ),
        (&controller, "update", "secrets", NS, false),
        (&controller, "get", "secrets", "shop", false),
        (&controller, "delete", "services", "shop", false),
        (
            &controller,
            "create",
            "ipaddresspools.metallb.io",
            NS,
            false,
        ),
        (
            &speaker,
            "watch",
            "endpointslices.discovery.k8s.io",
            "shop",
            true,
        ),
        (&speaker, "watch", "endpoints", "shop", false),
        (&speaker, "list", "nodes", "", true),
        (&speaker, "get", "secrets", NS, true),
        (&speaker, "create", "servicel2statuses.metallb.io", NS, true),
        (
            &speaker,
            "delete",
            "servicebgpstatuses.metallb.io",
            NS,
            true,
        ),
        (
            &speaker,
            "patch",
            "configurationstates.metallb.io/status",
            NS,
            true,
        ),
        (&speaker, "get", "pods", NS, true),
        (&speaker, "get", "daemonsets.apps", NS, true),
        // Its namespace's pods, watched for MetalLB's speakers during a hand-over; no
        // other namespace's, and it changes none.
        (&speaker, "list", "pods", NS, true),
        (&speaker, "watch", "pods", NS, true),
        (&speaker, "delete", "pods", NS, false),
        (&speaker, "list", "pods", "shop", false),
        (&speaker, "get", "pods", "shop", false),
        (&speaker, "create", "secrets", NS, false),
        (&speaker, "get", "secrets", "shop", false),
        (&speaker, "patch", "services/status", "shop", false),
        (&speaker, "update", "bgppeers.metallb.io", NS, false),
    ] {
        assert_eq!(
            kubectl.can_i(verb, resource, namespace, who)?,
            want,
            "{who} {verb} {resource} in {namespace:?}"
        );
    }
    Ok(())
}
