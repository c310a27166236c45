//! Configuration loading: every `metallb.io` object (plus the Namespaces, Nodes and Secrets
//! the rules need) in, one checked [`Config`] out, or every error at once.
//!
//! [`load`] is pure and shared by the CLI, the controller, the speaker and the webhook, so a
//! manifest that `ferrolb validate` accepts is one the cluster accepts. It applies MetalLB's
//! parse-time rules (see the per-kind modules) and adds strict grammars for every string that
//! reaches frr.conf. Each [`ConfigError`] names `Kind/namespace/name`, the field path and the
//! reason; references to objects that may simply not exist yet (BFDProfile, Community alias,
//! password Secret) are [`ErrorKind::MissingReference`], as MetalLB treats them as transient.

mod addresses;
mod advertisement;
mod bfd;
mod community;
mod error;
mod input;
mod model;
pub(crate) mod names;
mod peer;
mod pool;
mod selector;

pub use addresses::{AddressEntry, parse_entry, size as cidr_size};
pub use community::{BgpCommunity, parse_community};
pub use error::{ConfigError, ConfigWarning, ErrorKind, ObjectRef};
pub use input::ClusterObjects;
pub use model::*;
pub use selector::{Selector, any_matches};

use std::collections::BTreeMap;

use kube::Resource;

use crate::api::DEFAULT_NAMESPACE;
use error::Findings;

/// What [`load`] needs besides the objects.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The namespace ferrolb runs in; every `metallb.io` object must be there.
    pub namespace: String,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            namespace: DEFAULT_NAMESPACE.to_string(),
        }
    }
}

/// The full outcome of a load: the configuration when there is no error, and all errors and
/// warnings found.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// The configuration, when `errors` is empty.
    pub config: Option<Config>,
    /// Every error, ordered by object then field.
    pub errors: Vec<ConfigError>,
    /// Every warning, ordered by object then field.
    pub warnings: Vec<ConfigWarning>,
}

/// Loads and checks the configuration.
pub fn load(objects: &ClusterObjects, options: &LoadOptions) -> Result<Config, Vec<ConfigError>> {
    let analysis = analyse(objects, options);
    analysis.config.ok_or(analysis.errors)
}

/// Loads and checks the configuration, keeping warnings whatever the outcome.
pub fn analyse(objects: &ClusterObjects, options: &LoadOptions) -> Analysis {
    let mut findings = Findings::default();
    let bfd_profiles = bfd::load(objects, options, &mut findings);
    let community_aliases = community::load_aliases(objects, options, &mut findings);
    let mut pools = pool::load(objects, options, &mut findings);
    let peers = peer::load(objects, options, &bfd_profiles, &mut findings);
    let bgp_advertisements = advertisement::load_bgp(
        objects,
        options,
        &advertisement::BgpContext {
            pools: &pools,
            peers: &peers,
            aliases: &community_aliases,
            bfd_profiles: &bfd_profiles,
        },
        &mut findings,
    );
    let l2_advertisements = advertisement::load_l2(objects, options, &mut findings);
    for ad in bgp_advertisements.values() {
        for name in &ad.pools {
            if let Some(pool) = pools.get_mut(name) {
                pool.bgp_advertisements.insert(ad.name.clone());
            }
        }
    }
    for ad in l2_advertisements.values() {
        for name in &ad.pools {
            if let Some(pool) = pools.get_mut(name) {
                pool.l2_advertisements.insert(ad.name.clone());
            }
        }
    }
    let Findings {
        mut errors,
        mut warnings,
    } = findings;
    errors.sort_by(|a, b| a.object.cmp(&b.object));
    warnings.sort_by(|a, b| a.object.cmp(&b.object));
    let config = errors.is_empty().then(|| Config {
        namespace: options.namespace.clone(),
        pools,
        peers,
        bfd_profiles,
        bgp_advertisements,
        l2_advertisements,
        community_aliases,
        warnings: warnings.clone(),
    });
    Analysis {
        config,
        errors,
        warnings,
    }
}

/// Checks an object's name and namespace. Returns its reference, or `None` when the object
/// must be left out (no usable name, or another namespace).
pub(crate) fn identify<K>(
    object: &K,
    options: &LoadOptions,
    findings: &mut Findings,
) -> Option<ObjectRef>
where
    K: Resource<DynamicType = ()>,
{
    let kind = K::kind(&());
    let meta = object.meta();
    let namespace = meta
        .namespace
        .clone()
        .unwrap_or_else(|| options.namespace.clone());
    let name = meta.name.clone().unwrap_or_default();
    let reference = ObjectRef::new(&kind, &namespace, &name);
    if let Err(reason) = names::check_subdomain(&name) {
        findings.invalid(&reference, "metadata.name", reason);
        return None;
    }
    if namespace != options.namespace {
        findings.invalid(
            &reference,
            "metadata.namespace",
            format!(
                "{kind} objects must be in namespace {:?}, where ferrolb reads its configuration; this one would be ignored",
                options.namespace
            ),
        );
        return None;
    }
    Some(reference)
}

/// Keeps the first object of each name; reports later ones.
pub(crate) fn insert_unique<T>(
    map: &mut BTreeMap<String, T>,
    object: &ObjectRef,
    value: T,
    findings: &mut Findings,
) {
    if map.contains_key(&object.name) {
        findings.invalid(
            object,
            "metadata.name",
            "another object of this kind has the same name in the input",
        );
    } else {
        map.insert(object.name.clone(), value);
    }
}

/// Labels of a Kubernetes object as an owned sorted map.
pub(crate) fn labels_of<K: Resource>(object: &K) -> BTreeMap<String, String> {
    object.meta().labels.clone().unwrap_or_default()
}

/// Reports the first duplicate of each value in `values` at `field[i]`.
pub(crate) fn reject_duplicates(
    values: &[String],
    object: &ObjectRef,
    field: &str,
    findings: &mut Findings,
) -> bool {
    let mut ok = true;
    for (i, v) in values.iter().enumerate() {
        if let Some(first) = values[..i].iter().position(|w| w == v) {
            findings.invalid(
                object,
                format!("{field}[{i}]"),
                format!("{v:?} is already listed at {field}[{first}]"),
            );
            ok = false;
        }
    }
    ok
}

#[cfg(test)]
mod tests;
