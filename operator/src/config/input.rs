//! The objects configuration is loaded from, as typed Kubernetes objects.

use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::api::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement,
};

/// Everything [`super::load`] reads: the `metallb.io` configuration kinds, and the core
/// objects rules depend on (Namespaces for namespaceSelectors, Nodes for node-scoped rules,
/// Secrets for passwordSecret). Services are carried for the tools that allocate and render.
#[derive(Clone, Debug, Default)]
pub struct ClusterObjects {
    /// IPAddressPools.
    pub pools: Vec<IPAddressPool>,
    /// BGPPeers (v1beta1 documents are read into the v1beta2 type; the wire format is shared).
    pub peers: Vec<BGPPeer>,
    /// BGPAdvertisements.
    pub bgp_advertisements: Vec<BGPAdvertisement>,
    /// L2Advertisements.
    pub l2_advertisements: Vec<L2Advertisement>,
    /// BFDProfiles.
    pub bfd_profiles: Vec<BFDProfile>,
    /// Communities.
    pub communities: Vec<Community>,
    /// Secrets (only those in the ferrolb namespace are consulted).
    pub secrets: Vec<Secret>,
    /// Namespaces, for serviceAllocation.namespaceSelectors.
    pub namespaces: Vec<Namespace>,
    /// Nodes, for node-scoped rules. Without any, every node-scoped rule assumes the worst
    /// case: all selectors may select the same node.
    pub nodes: Vec<Node>,
    /// Services.
    pub services: Vec<Service>,
    /// EndpointSlices, for where Services have serving endpoints.
    pub endpoint_slices: Vec<EndpointSlice>,
}

impl ClusterObjects {
    /// Adds every object of `other`.
    pub fn extend(&mut self, other: ClusterObjects) {
        self.pools.extend(other.pools);
        self.peers.extend(other.peers);
        self.bgp_advertisements.extend(other.bgp_advertisements);
        self.l2_advertisements.extend(other.l2_advertisements);
        self.bfd_profiles.extend(other.bfd_profiles);
        self.communities.extend(other.communities);
        self.secrets.extend(other.secrets);
        self.namespaces.extend(other.namespaces);
        self.nodes.extend(other.nodes);
        self.services.extend(other.services);
        self.endpoint_slices.extend(other.endpoint_slices);
    }
}
