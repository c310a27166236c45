//! What the webhook decides, without sockets: the configuration the cluster would hold after
//! the request (the object created, replaced or deleted) is loaded exactly as the controller and
//! the speakers load it, and the request is denied when that produces errors the current
//! configuration does not have. So a change that breaks nothing is allowed even while some
//! other object is already invalid, and a deletion that would leave a reference dangling (a
//! BFDProfile a BGPPeer uses) is denied. A created or changed object that names one not
//! created yet (a BFDProfile, a Community alias, a password Secret) is allowed with a warning,
//! as MetalLB allows it: `kubectl apply` of one file sends its objects one by one, and Argo CD
//! orders objects of one kind group as it likes, so the order must not matter.

use std::collections::BTreeSet;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde::de::DeserializeOwned;

use crate::config::{self, ClusterObjects, LoadOptions};

/// `list` with the object named `name` taken out and, when given, `object` (read as `K`)
/// put in its place.
fn replace<K: DeserializeOwned + kube::Resource>(
    list: &mut Vec<K>,
    name: &str,
    object: Option<&DynamicObject>,
) -> Result<(), String> {
    list.retain(|o| o.meta().name.as_deref() != Some(name));
    if let Some(object) = object {
        let value = serde_json::to_value(object).map_err(|e| e.to_string())?;
        let typed: K = serde_path_to_error::deserialize(value)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
        list.push(typed);
    }
    Ok(())
}

/// The configuration after `request`; `None` when the kind is not ferrolb's.
fn after(
    objects: &ClusterObjects,
    request: &AdmissionRequest<DynamicObject>,
) -> Option<Result<ClusterObjects, String>> {
    if request.kind.group != "metallb.io" {
        return None;
    }
    let mut next = objects.clone();
    let object = match request.operation {
        Operation::Delete => None,
        _ => request.object.as_ref(),
    };
    let name = request.name.as_str();
    let name = if name.is_empty() {
        object
            .and_then(|o| o.metadata.name.as_deref())
            .unwrap_or_default()
    } else {
        name
    };
    let result = match request.kind.kind.as_str() {
        "IPAddressPool" => replace(&mut next.pools, name, object),
        "BGPPeer" => replace(&mut next.peers, name, object),
        "BGPAdvertisement" => replace(&mut next.bgp_advertisements, name, object),
        "L2Advertisement" => replace(&mut next.l2_advertisements, name, object),
        "BFDProfile" => replace(&mut next.bfd_profiles, name, object),
        "Community" => replace(&mut next.communities, name, object),
        _ => return None,
    };
    Some(result.map(|()| next))
}

/// Each error's text, and whether it clears once a referenced object is created.
fn errors(objects: &ClusterObjects, options: &LoadOptions) -> BTreeSet<(String, bool)> {
    match config::load(objects, options) {
        Ok(_) => BTreeSet::new(),
        Err(errors) => errors
            .iter()
            .map(|e| (e.to_string(), e.is_transient()))
            .collect(),
    }
}

/// The answer to `request`, given the configuration objects the cluster holds now.
pub(crate) fn review(
    objects: &ClusterObjects,
    options: &LoadOptions,
    request: &AdmissionRequest<DynamicObject>,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    // Objects outside ferrolb's namespace are not configuration; they are left alone.
    if request.namespace.as_deref() != Some(options.namespace.as_str()) {
        return response;
    }
    let Some(next) = after(objects, request) else {
        return response;
    };
    let what = format!(
        "{}/{}/{}",
        request.kind.kind, options.namespace, request.name
    );
    let next = match next {
        Ok(next) => next,
        Err(reason) => return response.deny(format!("{what}: {reason}")),
    };
    let before = errors(objects, options);
    let (pending, introduced): (Vec<_>, Vec<_>) = errors(&next, options)
        .into_iter()
        .filter(|e| !before.contains(e))
        .partition(|(_, transient)| *transient && request.operation != Operation::Delete);
    let introduced: Vec<String> = introduced.into_iter().map(|(e, _)| e).collect();
    if introduced.is_empty() {
        let mut response = response;
        if !pending.is_empty() {
            response.warnings = Some(pending.into_iter().map(|(e, _)| e).collect());
        }
        return response;
    }
    let verb = match request.operation {
        Operation::Delete => "deleting",
        Operation::Create => "creating",
        _ => "this change to",
    };
    response.deny(format!(
        "ferrolb: {verb} {what} would make the configuration invalid:\n{}",
        introduced.join("\n")
    ))
}

#[cfg(test)]
mod tests;
