//! The CRDs on a real control plane of the pinned Kubernetes release (`hack/k8s.sh`), applied
//! as a user applies them (`kubectl apply --server-side`, validated in full): every
//! `x-kubernetes-validations` rule refuses what it is there to refuse, with the rule's own
//! message, and accepts what it must accept. Both served BGPPeer versions are checked.
//!
//! What a rule cannot see (another object: an overlapping pool, a BFD profile in use) is the
//! webhook's (`webhook.rs`) and the ConfigurationState's (`controller.rs`).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferrolb_e2e::control_plane::ControlPlane;
use ferrolb_e2e::kubectl::Kubectl;
use ferrolb_e2e::paths::{self, Scratch};

const NS: &str = "metallb-system";

/// `kubectl apply -f -` of `manifest` must fail with `message` in kubectl's error.
fn refused(kubectl: &Kubectl, manifest: &str, message: &str) -> Result<()> {
    refused_by(kubectl.apply(manifest), message).with_context(|| format!("applying:\n{manifest}"))
}

/// What kubectl answered must be a refusal naming `message`.
fn refused_by(answer: Result<String>, message: &str) -> Result<()> {
    match answer {
        Ok(out) => bail!("accepted ({out}) though it breaks {message:?}"),
        Err(error) if format!("{error:#}").contains(message) => Ok(()),
        Err(error) => bail!("refused, but not with {message:?}: {error:#}"),
    }
}

fn peer(version: &str, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: metallb.io/{version}\nkind: BGPPeer\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.1{extra}}}\n"
    )
}

fn l2_status(node: &str, service: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: ServiceL2Status\nmetadata: {{name: l2-web, namespace: {NS}}}\nstatus: {{node: {node}, serviceName: {service}, serviceNamespace: shop}}\n"
    )
}

fn bgp_status(node: &str, namespace: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: ServiceBGPStatus\nmetadata: {{name: bgp-web, namespace: {NS}}}\nstatus: {{node: {node}, serviceName: web, serviceNamespace: {namespace}}}\n"
    )
}

/// Status is a subresource: a status kind's fields are written through it, as the speaker
/// writes them.
fn apply_status(kubectl: &Kubectl, manifest: &str) -> Result<String> {
    kubectl.run(
        &[
            "apply",
            "--server-side",
            "--subresource=status",
            "--field-manager=ferrolb-speaker",
            "-f",
            "-",
        ],
        Some(manifest),
    )
}

#[test]
fn every_cel_rule_refuses_with_its_message_and_accepts_what_is_valid() -> Result<()> {
    let scratch = Scratch::new("crds")?;
    let plane = ControlPlane::start(None, scratch.path(), "127.0.0.1".parse()?)?;
    let kubectl = Kubectl::new(plane.kubeconfig());
    kubectl.apply_crds(&paths::repo().join("crds"), Duration::from_secs(60))?;
    kubectl.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"
    ))?;

    // BGPPeer connectTime: 1 s to 65535 s, whole seconds; in both served versions.
    for version in ["v1beta2", "v1beta1"] {
        refused(
            &kubectl,
            &peer(version, "zero", ", connectTime: 0s"),
            "connectTime must be between 1s and 65535s",
        )?;
        refused(
            &kubectl,
            &peer(version, "huge", ", connectTime: 20h"),
            "connectTime must be between 1s and 65535s",
        )?;
        refused(
            &kubectl,
            &peer(version, "fraction", ", connectTime: 1500ms"),
            "connectTime must be a whole number of seconds",
        )?;
        kubectl.apply(&peer(
            version,
            &format!("ok-{version}"),
            ", connectTime: 5s",
        ))?;
        kubectl.apply(&peer(
            version,
            &format!("ok-{version}"),
            ", connectTime: 2m",
        ))?;
    }

    // enableGracefulRestart is fixed at creation; other fields still change.
    kubectl.apply(&peer("v1beta2", "gr", ", enableGracefulRestart: true"))?;
    refused(
        &kubectl,
        &peer("v1beta2", "gr", ", enableGracefulRestart: false"),
        "enableGracefulRestart cannot be changed after creation",
    )?;
    kubectl.apply(&peer(
        "v1beta2",
        "gr",
        ", enableGracefulRestart: true, holdTime: 30s",
    ))?;

    // BGPAdvertisement: serviceSelectors and aggregation exclude each other; either alone,
    // or selectors with the host-route lengths, are fine.
    let advertisement = |name: &str, spec: &str| {
        format!(
            "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{{spec}}}\n"
        )
    };
    let selectors = "serviceSelectors: [{matchLabels: {app: web}}]";
    refused(
        &kubectl,
        &advertisement("both", &format!("{selectors}, aggregationLength: 24")),
        "serviceSelectors and aggregationLength/aggregationLengthV6 are mutually exclusive",
    )?;
    refused(
        &kubectl,
        &advertisement("both6", &format!("{selectors}, aggregationLengthV6: 64")),
        "serviceSelectors and aggregationLength/aggregationLengthV6 are mutually exclusive",
    )?;
    kubectl.apply(&advertisement("selectors", selectors))?;
    kubectl.apply(&advertisement(
        "host-routes",
        &format!("{selectors}, aggregationLength: 32, aggregationLengthV6: 128"),
    ))?;
    kubectl.apply(&advertisement("aggregated", "aggregationLength: 24"))?;

    // The status kinds: which node announces which Service is fixed once written; the
    // interfaces may change.
    kubectl.apply(&format!(
        "apiVersion: metallb.io/v1beta1\nkind: ServiceL2Status\nmetadata: {{name: l2-web, namespace: {NS}}}\n"
    ))?;
    apply_status(&kubectl, &l2_status("n1", "web"))?;
    refused_by(
        apply_status(&kubectl, &l2_status("n2", "web")),
        "node is immutable",
    )?;
    refused_by(
        apply_status(&kubectl, &l2_status("n1", "api")),
        "serviceName is immutable",
    )?;
    apply_status(
        &kubectl,
        "apiVersion: metallb.io/v1beta1\nkind: ServiceL2Status\nmetadata: {name: l2-web, namespace: metallb-system}\nstatus: {node: n1, serviceName: web, serviceNamespace: shop, interfaces: [{name: eth1}]}\n",
    )?;
    kubectl.apply(&format!(
        "apiVersion: metallb.io/v1beta1\nkind: ServiceBGPStatus\nmetadata: {{name: bgp-web, namespace: {NS}}}\n"
    ))?;
    apply_status(&kubectl, &bgp_status("n1", "shop"))?;
    refused_by(
        apply_status(&kubectl, &bgp_status("n2", "shop")),
        "node is immutable",
    )?;
    refused_by(
        apply_status(&kubectl, &bgp_status("n1", "other")),
        "serviceNamespace is immutable",
    )?;
    Ok(())
}
