//! Community: named aliases for BGP community values.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::EmptyStatus;

/// Names for BGP communities, usable in BGPAdvertisement.spec.communities.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "Community",
    plural = "communities",
    namespaced,
    status = "EmptyStatus",
    derive = "PartialEq",
    doc = "Community names BGP community values so advertisements can refer to them."
)]
pub struct CommunitySpec {
    /// The aliases. Names are unique across all Community objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<Vec<CommunityAlias>>,
}

/// One named community value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommunityAlias {
    /// The alias used in BGPAdvertisements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `A:B` (two 16-bit numbers) or `large:A:B:C` (three 32-bit numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}
