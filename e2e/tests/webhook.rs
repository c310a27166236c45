//! The validating webhook, served by a real `ferrolb controller` with the certificates it makes
//! itself, against a real control plane of the pinned Kubernetes release (`hack/k8s.sh`):
//!
//! - the controller writes its CA and serving certificate into a Secret and the CA into the
//!   ValidatingWebhookConfiguration's `caBundle`;
//! - AdmissionReview v1 requests sent straight to it over TLS (curl, verifying the CA): a
//!   good object is allowed; an overlapping pool, a field of the wrong type, a bad CIDR and the
//!   deletion of a BFDProfile in use are denied, each with its reason;
//! - through the API server: `kubectl apply` of an overlapping pool fails with ferrolb's
//!   message, and so does `kubectl delete` of the BFDProfile a BGPPeer uses.

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferrolb_e2e::control_plane::ControlPlane;
use ferrolb_e2e::kubectl::Kubectl;
use ferrolb_e2e::paths::{self, Scratch};
use ferrolb_e2e::process::{Process, wait_for};
use serde_json::{Value, json};

/// A Namespace, a pool, and a peer using a BFD profile.
const BASE: &str = include_str!("webhook-base.yaml");

fn configuration(port: u16) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: ferrolb-validating-webhook}}
webhooks:
- name: config.metallb.io
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 5
  clientConfig: {{url: "https://127.0.0.1:{port}/validate"}}
  rules:
  - apiGroups: [metallb.io]
    apiVersions: [v1beta1, v1beta2]
    operations: [CREATE, UPDATE, DELETE]
    resources: [ipaddresspools, bgppeers, bgpadvertisements, l2advertisements, bfdprofiles, communities]
"#
    )
}

fn review(operation: &str, kind: &str, object: Value) -> Value {
    let name = object["metadata"]["name"].clone();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "e2e-1",
            "kind": {"group": "metallb.io", "version": "v1beta1", "kind": kind},
            "resource": {"group": "metallb.io", "version": "v1beta1", "resource": format!("{}s", kind.to_lowercase())},
            "name": name,
            "namespace": "metallb-system",
            "operation": operation,
            "userInfo": {"username": "e2e"},
            "object": if operation == "DELETE" { Value::Null } else { object.clone() },
            "oldObject": if operation == "DELETE" { object } else { Value::Null },
        }
    })
}

fn pool(name: &str, cidr: Value) -> Value {
    json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "metallb-system"},
        "spec": {"addresses": [cidr]},
    })
}

/// Posts `review` over TLS, trusting only `ca`; the response.
fn post(port: u16, ca: &std::path::Path, review: &Value) -> Result<Value> {
    let mut child = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--cacert"])
        .arg(ca)
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
        ])
        .arg(format!("https://127.0.0.1:{port}/validate"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(review.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("curl: {}", String::from_utf8_lossy(&out.stderr));
    }
    let answer: Value = serde_json::from_slice(&out.stdout)?;
    Ok(answer["response"].clone())
}

#[test]
fn the_webhook_allows_good_objects_and_denies_each_class_of_bad_one() -> Result<()> {
    let scratch = Scratch::new("webhook")?;
    let plane = ControlPlane::start(None, scratch.path(), "127.0.0.1".parse()?)?;
    let kubectl = Kubectl::new(plane.kubeconfig());
    kubectl.apply_crds(&paths::repo().join("crds"), Duration::from_secs(30))?;
    kubectl.apply(BASE)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let health = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    kubectl.apply(&configuration(port))?;
    let mut command = Command::new(paths::ferrolb()?);
    command
        .arg("controller")
        .args(["--pod-name", "controller-0"])
        .args(["--health-addr", &format!("127.0.0.1:{health}")])
        .args(["--metrics-addr", "none"])
        .args(["--webhook-addr", &format!("127.0.0.1:{port}")])
        .args(["--webhook-extra-name", "127.0.0.1"])
        .env("KUBECONFIG", plane.kubeconfig());
    let _controller = Process::spawn(
        "controller",
        command,
        &scratch.path().join("controller.log"),
    )?;

    // The CA reaches the configuration.
    let bundle = wait_for("the caBundle", Duration::from_secs(30), || {
        let vwc = kubectl.get(&[
            "validatingwebhookconfiguration",
            "ferrolb-validating-webhook",
        ])?;
        Ok(vwc["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .filter(|b| !b.is_empty())
            .map(str::to_string))
    })?;
    let secret = kubectl.get(&["secret", "-n", "metallb-system", "ferrolb-webhook-cert"])?;
    assert_eq!(secret["data"]["ca.crt"].as_str(), Some(bundle.as_str()));
    let mut decode = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    decode
        .stdin
        .take()
        .context("stdin")?
        .write_all(bundle.as_bytes())?;
    let ca = scratch.path().join("ca.pem");
    std::fs::write(&ca, decode.wait_with_output()?.stdout)?;

    // Straight to the webhook over TLS (retried until it serves).
    let good = wait_for("the webhook to answer", Duration::from_secs(30), || {
        Ok(post(
            port,
            &ca,
            &review("CREATE", "IPAddressPool", pool("b", json!("10.0.1.0/24"))),
        )
        .ok())
    })?;
    assert_eq!(good["allowed"], true, "{good}");
    assert_eq!(good["uid"], "e2e-1");
    let mut wrong_type = pool("c", json!("10.0.2.0/24"));
    wrong_type["spec"]["autoAssign"] = json!("yes");
    let fast = json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "BFDProfile",
        "metadata": {"name": "fast", "namespace": "metallb-system"}, "spec": {},
    });
    let create = |object| review("CREATE", "IPAddressPool", object);
    let (overlapping, bad_cidr) = (
        pool("b", json!("10.0.0.128/25")),
        pool("d", json!("10.0.3.0/99")),
    );
    for (what, request, reason) in [
        (
            "an overlapping pool",
            create(overlapping),
            r#"overlaps IPAddressPool "a""#,
        ),
        (
            "a field of the wrong type",
            create(wrong_type),
            "spec.autoAssign",
        ),
        (
            "a bad CIDR",
            create(bad_cidr),
            "IPAddressPool/metallb-system/d: spec.addresses[0]",
        ),
        (
            "deleting a BFDProfile in use",
            review("DELETE", "BFDProfile", fast),
            "BGPPeer/metallb-system/tor: spec.bfdProfile",
        ),
    ] {
        let answer = post(port, &ca, &request)?;
        assert_eq!(answer["allowed"], false, "{what}: {answer}");
        let message = answer["status"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{what}: {message}");
    }

    // Through the API server, as a user meets it.
    let overlapping = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b, namespace: metallb-system}\nspec: {addresses: [10.0.0.128/25]}\n";
    let error = kubectl.apply(overlapping).unwrap_err().to_string();
    assert!(
        error.contains(
            "ferrolb: creating IPAddressPool/metallb-system/b would make the configuration invalid"
        ) && error.contains("overlaps IPAddressPool \"a\""),
        "{error}"
    );
    let error = kubectl
        .run(
            &["delete", "bfdprofile", "-n", "metallb-system", "fast"],
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("deleting BFDProfile/metallb-system/fast"),
        "{error}"
    );
    kubectl.apply(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b, namespace: metallb-system}\nspec: {addresses: [10.0.1.0/24]}\n",
    )?;
    Ok(())
}
