//! `ferrolb convert`: MetalLB's legacy ConfigMap configuration (the `config` key, MetalLB
//! before 0.13) as the equivalent `metallb.io` custom resources.
//!
//! | legacy | resources |
//! |---|---|
//! | `address-pools[]` | an IPAddressPool each (`addresses`, `auto-assign`, `avoid-buggy-ips`) |
//! | `protocol: layer2` | an L2Advertisement naming the pool |
//! | `protocol: bgp` | a BGPAdvertisement per `bgp-advertisements[]` entry (one with defaults when there are none): `aggregation-length(-v6)`, `localpref`, `communities` |
//! | `peers[]` | a BGPPeer (v1beta2) each: `my-asn`, `peer-asn`, `peer-address`, `peer-port`, `source-address`, `router-id`, `hold-time`, `keepalive-time`, `password`, `bfd-profile`, `ebgp-multihop`, `vrf`, `node-selectors` (`match-labels`, `match-expressions`) |
//! | `bgp-communities` | one Community holding the aliases (advertisements keep using the names) |
//! | `bfd-profiles[]` | a BFDProfile each |
//!
//! What has no exact equivalent, and fields the legacy format never had, become comments above
//! the document concerned, never silent drops.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Why the input is not a legacy configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConvertError {
    /// Not YAML, or not of the legacy shape.
    #[error("{0}")]
    Syntax(String),
    /// A ConfigMap without the `config` key.
    #[error("ConfigMap {0} has no data.config (the legacy configuration)")]
    NoConfig(String),
    /// A pool without a protocol MetalLB knew.
    #[error("address-pools[{index}] ({name}): protocol {protocol:?} is neither layer2 nor bgp")]
    Protocol {
        /// Its position.
        index: usize,
        /// Its name.
        name: String,
        /// What it says.
        protocol: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Legacy {
    #[serde(default)]
    peers: Vec<LegacyPeer>,
    #[serde(default)]
    bgp_communities: BTreeMap<String, String>,
    #[serde(default)]
    address_pools: Vec<LegacyPool>,
    #[serde(default)]
    bfd_profiles: Vec<LegacyBfd>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LegacyPeer {
    my_asn: Option<u32>,
    peer_asn: Option<u32>,
    peer_address: Option<String>,
    source_address: Option<String>,
    peer_port: Option<u16>,
    hold_time: Option<String>,
    keepalive_time: Option<String>,
    router_id: Option<String>,
    #[serde(default)]
    node_selectors: Vec<LegacySelector>,
    password: Option<String>,
    bfd_profile: Option<String>,
    ebgp_multihop: Option<bool>,
    vrf: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LegacySelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<LegacyRequirement>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct LegacyRequirement {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LegacyPool {
    name: Option<String>,
    protocol: Option<String>,
    #[serde(default)]
    addresses: Vec<String>,
    avoid_buggy_ips: Option<bool>,
    auto_assign: Option<bool>,
    #[serde(default)]
    bgp_advertisements: Vec<LegacyAdvertisement>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LegacyAdvertisement {
    aggregation_length: Option<u8>,
    aggregation_length_v6: Option<u8>,
    localpref: Option<u32>,
    #[serde(default)]
    communities: Vec<String>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LegacyBfd {
    name: Option<String>,
    receive_interval: Option<u32>,
    transmit_interval: Option<u32>,
    detect_multiplier: Option<u32>,
    echo_interval: Option<u32>,
    echo_mode: Option<bool>,
    passive_mode: Option<bool>,
    minimum_ttl: Option<u32>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// One output resource and the comments above it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Document {
    /// Comment lines (without `#`).
    pub comments: Vec<String>,
    /// The resource.
    pub object: Value,
}

/// The converted configuration.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Converted {
    /// Resources in apply order: BFD profiles and communities, pools, advertisements, peers.
    pub documents: Vec<Document>,
    /// Notes about the whole input.
    pub notes: Vec<String>,
}

impl Converted {
    /// The resources as one multi-document YAML stream.
    pub(crate) fn yaml(&self) -> Result<String, String> {
        let mut out = String::new();
        for note in &self.notes {
            out.push_str(&format!("# {note}\n"));
        }
        for document in &self.documents {
            out.push_str("---\n");
            for comment in &document.comments {
                out.push_str(&format!("# {comment}\n"));
            }
            out.push_str(&serde_saphyr::to_string(&document.object).map_err(|e| e.to_string())?);
        }
        Ok(out)
    }
}

/// The legacy configuration in `text`: a ConfigMap (its `data.config`) or the configuration
/// file itself. `namespace` is where the resources go when the ConfigMap names none.
pub(crate) fn convert(text: &str, namespace: &str) -> Result<Converted, ConvertError> {
    let top: Value =
        serde_saphyr::from_str(text).map_err(|e| ConvertError::Syntax(e.to_string()))?;
    let (config_text, namespace) = if top.get("kind").and_then(Value::as_str) == Some("ConfigMap") {
        let name = top["metadata"]["name"].as_str().unwrap_or_default();
        let ns = top["metadata"]["namespace"].as_str().unwrap_or(namespace);
        let Some(config) = top["data"]["config"].as_str() else {
            return Err(ConvertError::NoConfig(format!("{ns}/{name}")));
        };
        (config.to_string(), ns.to_string())
    } else {
        (text.to_string(), namespace.to_string())
    };
    let legacy: Legacy = if config_text.trim().is_empty() {
        Legacy::default()
    } else {
        serde_saphyr::from_str(&config_text)
            .map_err(|e| ConvertError::Syntax(format!("the legacy configuration: {e}")))?
    };
    build(&legacy, &namespace)
}

fn meta(name: &str, namespace: &str) -> Value {
    json!({ "name": name, "namespace": namespace })
}

fn unknown(what: &str, other: &BTreeMap<String, Value>, comments: &mut Vec<String>) {
    for (key, value) in other {
        comments.push(format!(
            "{what}: legacy field {key:?} ({value}) is not a MetalLB field and was dropped"
        ));
    }
}

/// A DNS-subdomain name for a peer at `address`.
fn peer_name(address: &str) -> String {
    let cleaned: String = address
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("peer-{}", cleaned.trim_matches('-'))
}

fn selector(s: &LegacySelector, what: &str, comments: &mut Vec<String>) -> Value {
    unknown(what, &s.other, comments);
    let mut out = Map::new();
    if !s.match_labels.is_empty() {
        out.insert("matchLabels".into(), json!(s.match_labels));
    }
    if !s.match_expressions.is_empty() {
        let list: Vec<Value> = s
            .match_expressions
            .iter()
            .map(|r| {
                let mut e = json!({ "key": r.key, "operator": r.operator });
                if !r.values.is_empty() {
                    e["values"] = json!(r.values);
                }
                e
            })
            .collect();
        out.insert("matchExpressions".into(), Value::Array(list));
    }
    Value::Object(out)
}

#[allow(clippy::too_many_lines)]
fn build(legacy: &Legacy, namespace: &str) -> Result<Converted, ConvertError> {
    let mut documents = Vec::new();
    let mut notes = vec![format!(
        "Converted from MetalLB's legacy ConfigMap configuration by `ferrolb convert`; apply with kubectl apply -f (namespace {namespace})."
    )];
    for (key, value) in &legacy.other {
        notes.push(format!(
            "legacy field {key:?} ({value}) is not a MetalLB field and was dropped"
        ));
    }

    for (index, bfd) in legacy.bfd_profiles.iter().enumerate() {
        let name = bfd
            .name
            .clone()
            .unwrap_or_else(|| format!("bfd-{}", index + 1));
        let mut comments = Vec::new();
        if bfd.name.is_none() {
            comments.push(format!("bfd-profiles[{index}] had no name; named {name}"));
        }
        unknown(&format!("bfd-profiles[{index}]"), &bfd.other, &mut comments);
        let mut spec = Map::new();
        for (field, value) in [
            ("receiveInterval", bfd.receive_interval),
            ("transmitInterval", bfd.transmit_interval),
            ("detectMultiplier", bfd.detect_multiplier),
            ("echoInterval", bfd.echo_interval),
            ("minimumTtl", bfd.minimum_ttl),
        ] {
            if let Some(v) = value {
                spec.insert(field.into(), json!(v));
            }
        }
        for (field, value) in [
            ("echoMode", bfd.echo_mode),
            ("passiveMode", bfd.passive_mode),
        ] {
            if let Some(v) = value {
                spec.insert(field.into(), json!(v));
            }
        }
        documents.push(Document {
            comments,
            object: json!({
                "apiVersion": "metallb.io/v1beta1",
                "kind": "BFDProfile",
                "metadata": meta(&name, namespace),
                "spec": spec,
            }),
        });
    }

    if !legacy.bgp_communities.is_empty() {
        let aliases: Vec<Value> = legacy
            .bgp_communities
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect();
        documents.push(Document {
            comments: vec![
                "bgp-communities: the aliases, which the BGPAdvertisements below still use by name"
                    .into(),
            ],
            object: json!({
                "apiVersion": "metallb.io/v1beta1",
                "kind": "Community",
                "metadata": meta("communities", namespace),
                "spec": { "communities": aliases },
            }),
        });
    }

    let mut advertisements = Vec::new();
    for (index, pool) in legacy.address_pools.iter().enumerate() {
        let name = pool
            .name
            .clone()
            .unwrap_or_else(|| format!("pool-{}", index + 1));
        let mut comments = Vec::new();
        if pool.name.is_none() {
            comments.push(format!("address-pools[{index}] had no name; named {name}"));
        }
        unknown(
            &format!("address-pools[{index}]"),
            &pool.other,
            &mut comments,
        );
        let mut spec = Map::new();
        spec.insert("addresses".into(), json!(pool.addresses));
        if let Some(auto) = pool.auto_assign {
            spec.insert("autoAssign".into(), json!(auto));
        }
        if let Some(avoid) = pool.avoid_buggy_ips {
            spec.insert("avoidBuggyIPs".into(), json!(avoid));
        }
        let protocol = pool.protocol.as_deref().unwrap_or_default();
        match protocol {
            "layer2" => {
                if !pool.bgp_advertisements.is_empty() {
                    comments.push(
                        "bgp-advertisements of a layer2 pool were ignored by MetalLB and are not converted"
                            .into(),
                    );
                }
                advertisements.push(Document {
                    comments: vec![format!("address-pools[{index}] protocol: layer2")],
                    object: json!({
                        "apiVersion": "metallb.io/v1beta1",
                        "kind": "L2Advertisement",
                        "metadata": meta(&name, namespace),
                        "spec": { "ipAddressPools": [name] },
                    }),
                });
            }
            "bgp" => {
                let single = pool.bgp_advertisements.len() <= 1;
                let defaults = [LegacyAdvertisement::default()];
                let list: &[LegacyAdvertisement] = if pool.bgp_advertisements.is_empty() {
                    &defaults
                } else {
                    &pool.bgp_advertisements
                };
                for (i, ad) in list.iter().enumerate() {
                    let ad_name = if single {
                        name.clone()
                    } else {
                        format!("{name}-{}", i + 1)
                    };
                    let mut ad_comments = vec![format!(
                        "address-pools[{index}] protocol: bgp{}",
                        if pool.bgp_advertisements.is_empty() {
                            ", no bgp-advertisements: every IP as a /32 (/128) to every peer"
                                .to_string()
                        } else {
                            format!(", bgp-advertisements[{i}]")
                        }
                    )];
                    unknown(
                        &format!("address-pools[{index}].bgp-advertisements[{i}]"),
                        &ad.other,
                        &mut ad_comments,
                    );
                    let mut spec = Map::new();
                    spec.insert("ipAddressPools".into(), json!([name]));
                    if let Some(v) = ad.aggregation_length {
                        spec.insert("aggregationLength".into(), json!(v));
                    }
                    if let Some(v) = ad.aggregation_length_v6 {
                        spec.insert("aggregationLengthV6".into(), json!(v));
                    }
                    if let Some(v) = ad.localpref {
                        spec.insert("localPref".into(), json!(v));
                    }
                    if !ad.communities.is_empty() {
                        spec.insert("communities".into(), json!(ad.communities));
                    }
                    advertisements.push(Document {
                        comments: ad_comments,
                        object: json!({
                            "apiVersion": "metallb.io/v1beta1",
                            "kind": "BGPAdvertisement",
                            "metadata": meta(&ad_name, namespace),
                            "spec": spec,
                        }),
                    });
                }
            }
            other => {
                return Err(ConvertError::Protocol {
                    index,
                    name,
                    protocol: other.to_string(),
                });
            }
        }
        documents.push(Document {
            comments,
            object: json!({
                "apiVersion": "metallb.io/v1beta1",
                "kind": "IPAddressPool",
                "metadata": meta(&name, namespace),
                "spec": spec,
            }),
        });
    }
    documents.extend(advertisements);

    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (index, peer) in legacy.peers.iter().enumerate() {
        let address = peer.peer_address.clone().unwrap_or_default();
        let mut name = peer_name(&address);
        let seen = names.entry(name.clone()).or_default();
        *seen += 1;
        if *seen > 1 {
            name = format!("{name}-{seen}");
        }
        let mut comments = vec![format!("peers[{index}]")];
        unknown(&format!("peers[{index}]"), &peer.other, &mut comments);
        let mut spec = Map::new();
        if let Some(v) = peer.my_asn {
            spec.insert("myASN".into(), json!(v));
        }
        if let Some(v) = peer.peer_asn {
            spec.insert("peerASN".into(), json!(v));
        }
        spec.insert("peerAddress".into(), json!(address));
        if let Some(v) = peer.peer_port {
            spec.insert("peerPort".into(), json!(v));
        }
        if let Some(v) = &peer.source_address {
            spec.insert("sourceAddress".into(), json!(v));
        }
        if let Some(v) = &peer.router_id {
            spec.insert("routerID".into(), json!(v));
        }
        if let Some(v) = &peer.hold_time {
            spec.insert("holdTime".into(), json!(v));
        }
        if let Some(v) = &peer.keepalive_time {
            spec.insert("keepaliveTime".into(), json!(v));
        }
        if let Some(v) = &peer.password {
            spec.insert("password".into(), json!(v));
            comments.push(
                "the password stays inline as in the ConfigMap; a Secret (spec.passwordSecret) keeps it out of the manifest"
                    .into(),
            );
        }
        if let Some(v) = &peer.bfd_profile {
            spec.insert("bfdProfile".into(), json!(v));
        }
        if let Some(v) = peer.ebgp_multihop {
            spec.insert("ebgpMultiHop".into(), json!(v));
        }
        if let Some(v) = &peer.vrf {
            spec.insert("vrf".into(), json!(v));
        }
        if !peer.node_selectors.is_empty() {
            let list: Vec<Value> = peer
                .node_selectors
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    selector(
                        s,
                        &format!("peers[{index}].node-selectors[{i}]"),
                        &mut comments,
                    )
                })
                .collect();
            spec.insert("nodeSelectors".into(), Value::Array(list));
        }
        documents.push(Document {
            comments,
            object: json!({
                "apiVersion": "metallb.io/v1beta2",
                "kind": "BGPPeer",
                "metadata": meta(&name, namespace),
                "spec": spec,
            }),
        });
    }
    Ok(Converted { documents, notes })
}

#[cfg(test)]
mod tests;
