//! Where a Service's endpoints serve, per node, from its EndpointSlices.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{SERVICE_NAME_LABEL, ServiceKey};

/// A set of node names: sorted and without repeats, each name shared with every other set
/// naming that node. A Service's endpoints usually sit on a few nodes, and the speaker keeps
/// such a set per Service and per EndpointSlice; a `BTreeSet<String>` costs a 280-byte node
/// and a copy of each name, this costs one small array of pointers.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeSet(pub(super) Vec<Arc<str>>);

/// The one shared copy of a node name. Names no set uses any more are dropped when the table
/// has doubled since it was last swept.
fn node_name(name: &str) -> Arc<str> {
    static NAMES: Mutex<(BTreeSet<Arc<str>>, usize)> = Mutex::new((BTreeSet::new(), 0));
    let mut guard = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (names, swept) = &mut *guard;
    if let Some(shared) = names.get(name) {
        return Arc::clone(shared);
    }
    if names.len() >= (*swept * 2).max(64) {
        names.retain(|n| Arc::strong_count(n) > 1);
        *swept = names.len();
    }
    let shared: Arc<str> = Arc::from(name);
    names.insert(Arc::clone(&shared));
    shared
}

impl NodeSet {
    /// Whether `node` is in the set.
    pub fn contains(&self, node: &str) -> bool {
        self.0.binary_search_by(|n| (**n).cmp(node)).is_ok()
    }

    /// Adds `node`.
    pub fn insert(&mut self, node: &str) {
        if let Err(at) = self.0.binary_search_by(|n| (**n).cmp(node)) {
            self.0.insert(at, node_name(node));
        }
    }

    /// Adds every node of `other`.
    pub fn extend(&mut self, other: &NodeSet) {
        for node in &other.0 {
            if let Err(at) = self.0.binary_search(node) {
                self.0.insert(at, Arc::clone(node));
            }
        }
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|n| &**n)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many nodes the set holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<S: AsRef<str>> FromIterator<S> for NodeSet {
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> NodeSet {
        let mut set = NodeSet::default();
        for name in names {
            set.insert(name.as_ref());
        }
        set.0.shrink_to_fit();
        set
    }
}

/// Where a Service has endpoints that can take traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServingEndpoints {
    /// Nodes hosting at least one serving endpoint (ready or terminating).
    pub nodes: NodeSet,
    /// Nodes hosting at least one ready endpoint (a subset of `nodes`).
    pub ready: NodeSet,
    /// Whether any serving endpoint exists, on a known node or not.
    pub any: bool,
}

impl ServingEndpoints {
    /// Whether `node` counts as having the Service's endpoints: it has a ready one, or it
    /// has a terminating one that still serves and no node has a ready one.
    pub fn on_node(&self, node: &str) -> bool {
        if self.ready.is_empty() {
            self.nodes.contains(node)
        } else {
            self.ready.contains(node)
        }
    }

    /// Adds what another part of the same Service's endpoints (another slice) says.
    pub fn merge(&mut self, other: &ServingEndpoints) {
        self.any |= other.any;
        self.nodes.extend(&other.nodes);
        self.ready.extend(&other.ready);
    }
}

/// One EndpointSlice's Service and where its endpoints serve; `None` for a slice without
/// the `kubernetes.io/service-name` label.
pub fn slice_serving(slice: &EndpointSlice) -> Option<(ServiceKey, ServingEndpoints)> {
    let meta = &slice.metadata;
    let service = meta.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let key = ServiceKey::new(meta.namespace.as_deref().unwrap_or("default"), service);
    let mut out = ServingEndpoints::default();
    for endpoint in &slice.endpoints {
        let conditions = endpoint.conditions.as_ref();
        let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
        let serving = conditions.and_then(|c| c.serving).unwrap_or(false);
        if !(ready || serving) || endpoint.addresses.is_empty() {
            continue;
        }
        out.any = true;
        if let Some(node) = &endpoint.node_name {
            out.nodes.insert(node);
            // `ready` is false for a terminating endpoint, whatever its probes say.
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            if ready && !terminating {
                out.ready.insert(node);
            }
        }
    }
    out.nodes.0.shrink_to_fit();
    out.ready.0.shrink_to_fit();
    Some((key, out))
}

fn group(
    parts: impl Iterator<Item = (ServiceKey, ServingEndpoints)>,
) -> BTreeMap<ServiceKey, ServingEndpoints> {
    let mut out: BTreeMap<ServiceKey, ServingEndpoints> = BTreeMap::new();
    for (key, part) in parts {
        out.entry(key).or_default().merge(&part);
    }
    out
}

/// Groups EndpointSlices by the Service they belong to and summarises where endpoints serve.
pub fn serving_endpoints<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> BTreeMap<ServiceKey, ServingEndpoints> {
    group(slices.into_iter().filter_map(slice_serving))
}
