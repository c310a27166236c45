//! Manifests for tests, built one object at a time: each function gives one YAML document
//! (starting with `---`), so a test's input is the list of objects it needs, concatenated.
//! Configuration kinds land in `metallb-system`; `spec` and the other arguments are YAML flow
//! text (`"{addresses: [10.0.0.0/24]}"`).

/// One object of `kind` (its apiVersion is the one ferrolb serves or Kubernetes' own), with
/// `metadata` as flow text and the rest of the document (`spec: …`, `status: …`) as written.
pub(crate) fn object(kind: &str, metadata: &str, rest: &str) -> String {
    let api_version = match kind {
        "BGPPeer" => "metallb.io/v1beta2",
        "IPAddressPool" | "BFDProfile" | "BGPAdvertisement" | "L2Advertisement" | "Community" => {
            "metallb.io/v1beta1"
        }
        "EndpointSlice" => "discovery.k8s.io/v1",
        _ => "v1",
    };
    format!("---\napiVersion: {api_version}\nkind: {kind}\nmetadata: {metadata}\n{rest}\n")
}

/// A configuration object named `name` in `metallb-system`.
pub(crate) fn configuration(kind: &str, name: &str, spec: &str) -> String {
    object(
        kind,
        &format!("{{name: {name}, namespace: metallb-system}}"),
        &format!("spec: {spec}"),
    )
}

/// An IPAddressPool.
pub(crate) fn pool(name: &str, spec: &str) -> String {
    configuration("IPAddressPool", name, spec)
}

/// A BGPPeer (v1beta2).
pub(crate) fn peer(name: &str, spec: &str) -> String {
    configuration("BGPPeer", name, spec)
}

/// A BFDProfile.
pub(crate) fn bfd_profile(name: &str, spec: &str) -> String {
    configuration("BFDProfile", name, spec)
}

/// A BGPAdvertisement.
pub(crate) fn bgp_advertisement(name: &str, spec: &str) -> String {
    configuration("BGPAdvertisement", name, spec)
}

/// An L2Advertisement.
pub(crate) fn l2_advertisement(name: &str, spec: &str) -> String {
    configuration("L2Advertisement", name, spec)
}

/// A Namespace.
pub(crate) fn namespace(name: &str) -> String {
    object("Namespace", &format!("{{name: {name}}}"), "")
}

/// A Service `namespace/name` with `extra` metadata (`", annotations: {…}"`, or empty) and
/// the rest of the document (`spec: …`, `status: …`).
pub(crate) fn service(namespace: &str, name: &str, extra: &str, rest: &str) -> String {
    object(
        "Service",
        &format!("{{name: {name}, namespace: {namespace}{extra}}}"),
        rest,
    )
}

/// A Node with `labels` (flow text inside the braces) and the rest of the document.
pub(crate) fn node(name: &str, labels: &str, rest: &str) -> String {
    object(
        "Node",
        &format!("{{name: {name}, labels: {{kubernetes.io/hostname: {name}{labels}}}}}"),
        rest,
    )
}

/// A `type: LoadBalancer` Service with more `spec` fields (flow text inside the braces).
pub(crate) fn lb_service(namespace: &str, name: &str, extra: &str, spec: &str) -> String {
    service(
        namespace,
        name,
        extra,
        &format!("spec: {{type: LoadBalancer, {spec}}}"),
    )
}
