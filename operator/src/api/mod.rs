//! The `metallb.io` API, exactly as MetalLB serves it, so existing manifests apply unchanged.
//!
//! Every kind is namespaced and lives in the ferrolb namespace (`metallb-system` by default).
//! The Rust types keep the wire form: optional fields stay `Option` and are not defaulted on
//! deserialisation (the CRD declares the defaults, the apiserver applies them, and
//! [`crate::config`] applies the same defaults when it reads files). Semantic checks that
//! span objects live in [`crate::config`]; what a single object can check is in its schema
//! (ranges, enums, CEL rules where MetalLB has them).
//!
//! BGPPeer is served as `v1beta1` (deprecated) and `v1beta2` (stored) with **no conversion
//! webhook**: the v1beta1 schema is derived from the v1beta2 one (see [`peer`]), so the two
//! versions are the same wire format and `conversion.strategy: None` is correct.

// kube's `printcolumn(...)` attributes repeat keys such as `type_` by design, and the code
// its `CustomResource` derive generates makes `unreachable_pub` flag the spec types, which are
// reachable (re-exported below).
#![allow(clippy::duplicated_attributes, unreachable_pub)]

pub mod advertisement;
pub mod bfd;
pub mod community;
pub mod peer;
pub mod pool;
pub mod status;

pub use advertisement::{
    BGPAdvertisement, BGPAdvertisementSpec, L2Advertisement, L2AdvertisementSpec,
    PreferredNodeSelector,
};
pub use bfd::{BFDProfile, BFDProfileSpec};
pub use community::{Community, CommunityAlias, CommunitySpec};
pub use peer::{BGPPeer, BGPPeerSpec, DynamicAsnMode};
pub use pool::{IPAddressPool, IPAddressPoolSpec, IPAddressPoolStatus, ServiceAllocation};
pub use status::{
    ConfigurationState, ConfigurationStateResult, ConfigurationStateStatus, ServiceBGPStatus,
    ServiceBGPStatusStatus, ServiceL2Status, ServiceL2StatusStatus, StatusInterface,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;
use serde::{Deserialize, Serialize};

/// The API group of every ferrolb kind.
pub const GROUP: &str = "metallb.io";

/// The namespace ferrolb runs in and reads its configuration from, unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "metallb-system";

/// The status of kinds whose status MetalLB declares but never fills.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EmptyStatus {}

/// Every CustomResourceDefinition ferrolb serves, sorted by name.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut all = vec![
        IPAddressPool::crd(),
        peer::crd(),
        BGPAdvertisement::crd(),
        L2Advertisement::crd(),
        BFDProfile::crd(),
        Community::crd(),
        ServiceL2Status::crd(),
        ServiceBGPStatus::crd(),
        ConfigurationState::crd(),
    ];
    for crd in &mut all {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                normalise_schema(schema);
                default_empty_spec(schema);
            }
        }
    }
    all.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    all
}

/// MetalLB never requires `spec`: its own documentation creates an L2Advertisement with
/// none. Where no spec field is required, `spec` is optional and defaults to `{}`, so the
/// apiserver stores (and serves) an empty spec and typed clients always find one.
fn default_empty_spec(root: &mut JSONSchemaProps) {
    let spec_required_fields = root
        .properties
        .as_ref()
        .and_then(|p| p.get("spec"))
        .is_some_and(|spec| spec.required.as_ref().is_some_and(|r| !r.is_empty()));
    if spec_required_fields {
        return;
    }
    if let Some(required) = root.required.as_mut() {
        required.retain(|field| field != "spec");
        if required.is_empty() {
            root.required = None;
        }
    }
    if let Some(spec) = root.properties.as_mut().and_then(|p| p.get_mut("spec")) {
        spec.default = Some(JSON(serde_json::json!({})));
    }
}

/// Brings a derived schema to the conventions of Kubernetes API schemas: no `nullable` (an
/// unset optional field is omitted, never null) and only integer formats the apiserver knows
/// (`int32`, `int64`), chosen from the field's declared maximum.
fn normalise_schema(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    if let Some(format) = schema.format.as_deref()
        && format.starts_with("uint")
    {
        let fits_int32 = schema.maximum.is_some_and(|max| max <= f64::from(i32::MAX));
        schema.format = Some(if fits_int32 { "int32" } else { "int64" }.to_string());
    }
    if let Some(props) = schema.properties.as_mut() {
        props.values_mut().for_each(normalise_schema);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        normalise_schema(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = schema.additional_properties.as_mut() {
        normalise_schema(extra);
    }
}

/// Each CRD as a YAML document, with the file name it has in `crds/`
/// (`<group>_<plural>.yaml`).
pub fn crd_files() -> Result<Vec<(String, String)>, serde_saphyr::ser::Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let file = format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural);
            Ok((file, format!("---\n{}", serde_saphyr::to_string(&crd)?)))
        })
        .collect()
}

/// All CRDs as one multi-document YAML stream: what `ferrolb crds` prints and `crds/` holds.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    Ok(crd_files()?.into_iter().map(|(_, yaml)| yaml).collect())
}

#[cfg(test)]
mod tests;
