use super::*;
use crate::api::GROUP;
use crate::{fixtures, manifest};
use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::Operation;
use kube::core::{GroupVersionKind, GroupVersionResource, TypeMeta};
use serde_json::json;

/// A pool, and a peer using a BFD profile.
fn base_yaml() -> String {
    [
        fixtures::pool("a", "{addresses: [10.0.0.0/24]}"),
        fixtures::bfd_profile("fast", "{receiveInterval: 100}"),
        fixtures::peer(
            "tor",
            "{myASN: 64512, peerASN: 64513, peerAddress: 10.1.0.1, bfdProfile: fast}",
        ),
    ]
    .concat()
}

fn objects(text: &str) -> ClusterObjects {
    manifest::parse(text, "test", "metallb-system")
        .unwrap()
        .objects
}

/// The request the API server sends when `operation` (`CREATE`, `UPDATE`, `DELETE`)
/// meets `object` of `kind`.
fn request(
    operation: &str,
    kind: &str,
    object: serde_json::Value,
) -> AdmissionRequest<DynamicObject> {
    let operation: Operation = serde_json::from_value(json!(operation)).unwrap();
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    let name = object.metadata.name.clone().unwrap_or_default();
    let (object, old_object) = match operation {
        Operation::Delete => (None, Some(object)),
        _ => (Some(object), None),
    };
    let resource = format!("{}s", kind.to_lowercase());
    AdmissionRequest {
        types: TypeMeta {
            api_version: "admission.k8s.io/v1".into(),
            kind: "AdmissionReview".into(),
        },
        uid: "u-1".into(),
        kind: GroupVersionKind::gvk(GROUP, "v1beta1", kind),
        resource: GroupVersionResource::gvr(GROUP, "v1beta1", &resource),
        sub_resource: None,
        request_kind: None,
        request_resource: None,
        request_sub_resource: None,
        name,
        namespace: Some("metallb-system".into()),
        operation,
        user_info: UserInfo::default(),
        object,
        old_object,
        dry_run: false,
        options: None,
    }
}

fn pool(name: &str, cidr: &str) -> serde_json::Value {
    json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "metallb-system"},
        "spec": {"addresses": [cidr]},
    })
}

fn options() -> LoadOptions {
    LoadOptions {
        namespace: "metallb-system".into(),
    }
}

#[test]
fn a_good_pool_is_allowed_and_an_overlapping_one_denied_with_its_reason() {
    let base = objects(&base_yaml());
    let ok = review(
        &base,
        &options(),
        &request("CREATE", "IPAddressPool", pool("b", "10.0.1.0/24")),
    );
    assert!(ok.allowed, "{:?}", ok.result);
    let denied = review(
        &base,
        &options(),
        &request("CREATE", "IPAddressPool", pool("b", "10.0.0.128/25")),
    );
    assert!(!denied.allowed);
    let message = denied.result.message;
    assert!(message.starts_with("ferrolb: creating IPAddressPool/metallb-system/b would make the configuration invalid:\n"), "{message}");
    assert!(
        message.contains("overlaps IPAddressPool \"a\""),
        "{message}"
    );
    // Replacing a with itself changed is judged without the old a.
    let moved = review(
        &base,
        &options(),
        &request("UPDATE", "IPAddressPool", pool("a", "10.0.0.0/23")),
    );
    assert!(moved.allowed, "{:?}", moved.result);
}

#[test]
fn a_field_of_the_wrong_type_and_a_bad_value_are_denied() {
    let base = objects(&base_yaml());
    let mut wrong = pool("c", "10.9.0.0/24");
    wrong["spec"]["autoAssign"] = json!("yes");
    let denied = review(
        &base,
        &options(),
        &request("CREATE", "IPAddressPool", wrong),
    );
    assert!(!denied.allowed);
    assert!(
        denied.result.message.contains("spec.autoAssign"),
        "{}",
        denied.result.message
    );
    let denied = review(
        &base,
        &options(),
        &request("CREATE", "IPAddressPool", pool("c", "10.9.0.0/99")),
    );
    assert!(!denied.allowed);
    assert!(
        denied
            .result
            .message
            .contains("IPAddressPool/metallb-system/c: spec.addresses[0]"),
        "{}",
        denied.result.message
    );
}

#[test]
fn a_peer_may_name_a_bfd_profile_created_after_it_with_a_warning() {
    let base = objects(&base_yaml());
    let peer = json!({
        "apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
        "metadata": {"name": "rack2", "namespace": "metallb-system"},
        "spec": {"myASN": 64512, "peerASN": 64513, "peerAddress": "10.1.0.2", "bfdProfile": "slow"},
    });
    let allowed = review(
        &base,
        &options(),
        &request("CREATE", "BGPPeer", peer.clone()),
    );
    assert!(allowed.allowed, "{:?}", allowed.result);
    let warnings = allowed.warnings.unwrap_or_default();
    assert!(
        warnings.len() == 1
            && warnings[0].contains("spec.bfdProfile: BFDProfile \"slow\" does not exist"),
        "{warnings:?}"
    );
    // A real error in the same object is still denied.
    let mut bad = peer;
    bad["spec"]["peerAddress"] = json!("10.1.0.300");
    let denied = review(&base, &options(), &request("CREATE", "BGPPeer", bad));
    assert!(!denied.allowed);
}

#[test]
fn a_bfd_profile_in_use_cannot_be_deleted_an_unused_one_can() {
    let base = objects(&base_yaml());
    let fast = json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "BFDProfile",
        "metadata": {"name": "fast", "namespace": "metallb-system"}, "spec": {},
    });
    let denied = review(&base, &options(), &request("DELETE", "BFDProfile", fast));
    assert!(!denied.allowed);
    assert!(
        denied
            .result
            .message
            .contains("deleting BFDProfile/metallb-system/fast"),
        "{}",
        denied.result.message
    );
    assert!(
        denied
            .result
            .message
            .contains("BGPPeer/metallb-system/tor: spec.bfdProfile"),
        "{}",
        denied.result.message
    );
    let unused = objects(&base_yaml().replace(", bfdProfile: fast", ""));
    let fast = json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "BFDProfile",
        "metadata": {"name": "fast", "namespace": "metallb-system"}, "spec": {},
    });
    assert!(review(&unused, &options(), &request("DELETE", "BFDProfile", fast)).allowed);
}

#[test]
fn an_unrelated_change_passes_while_something_else_is_broken() {
    let broken = objects(&(base_yaml() + &fixtures::pool("z", "{addresses: [10.0.0.5/32]}")));
    assert!(
        review(
            &broken,
            &options(),
            &request("CREATE", "IPAddressPool", pool("b", "10.0.1.0/24"))
        )
        .allowed
    );
    // Other namespaces and other groups are not ferrolb's.
    let mut elsewhere = request("CREATE", "IPAddressPool", pool("b", "10.0.0.0/24"));
    elsewhere.namespace = Some("shop".into());
    assert!(review(&broken, &options(), &elsewhere).allowed);
}
