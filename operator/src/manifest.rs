//! Manifests → typed objects: multi-document YAML or JSON as users keep them in Git.
//!
//! `metallb.io` kinds are decoded strictly: a field the API does not have is an error, as
//! `kubectl apply` (strict field validation) would report it, and a value of the wrong type
//! names its field path. Core kinds the rules need (Service, Node, Namespace, Secret) are
//! decoded leniently; every other kind is skipped. `kind: List` documents are unpacked.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::BGPPeer;
use crate::config::{ClusterObjects, ConfigError, ConfigWarning, ObjectRef};

/// A document that cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: not valid YAML or JSON: {message}")]
pub struct SyntaxError {
    /// Where the text came from (a path, or `<stdin>`).
    pub source_name: String,
    /// The parser's explanation, with line and column.
    pub message: String,
}

/// Objects read from manifests, and the problems found while decoding them.
#[derive(Debug, Default)]
pub struct Manifests {
    /// The decoded objects.
    pub objects: ClusterObjects,
    /// Documents of a known kind that do not decode.
    pub errors: Vec<ConfigError>,
    /// Decoded, but worth a note (deprecated versions).
    pub warnings: Vec<ConfigWarning>,
}

impl Manifests {
    /// Adds everything of `other`.
    pub fn extend(&mut self, other: Manifests) {
        self.objects.extend(other.objects);
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }
}

/// Parses every document of `text`. `namespace` is assumed for objects that give none,
/// as `kubectl apply -n` would.
pub fn parse(text: &str, source_name: &str, namespace: &str) -> Result<Manifests, SyntaxError> {
    // The parser's defaults (1,024 documents, 250,000 nodes) are below a real cluster's dump;
    // the limits that stop alias bombs stay as they are.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 1_000_000,
            max_nodes: 50_000_000,
            max_events: 200_000_000,
        },
    };
    let documents: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| SyntaxError {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
    let mut out = Manifests::default();
    for (index, document) in documents.into_iter().enumerate() {
        let place = format!("{source_name}#{}", index + 1);
        add_document(document, &place, namespace, &mut out);
    }
    Ok(out)
}

fn add_document(document: Value, place: &str, namespace: &str, out: &mut Manifests) {
    if document.is_null() {
        return;
    }
    let api_version = document
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = document
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if api_version.is_empty() || kind.is_empty() {
        out.errors.push(ConfigError::invalid(
            &ObjectRef::new("document", "", place),
            if api_version.is_empty() {
                "apiVersion"
            } else {
                "kind"
            },
            "must be set: every document must be a Kubernetes object with apiVersion and kind",
        ));
        return;
    }
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let reference = object_ref(&document, &kind, namespace);
    match (group, version, kind.as_str()) {
        ("", "v1", "List") => {
            if let Some(Value::Array(items)) = document.get("items") {
                for (i, item) in items.iter().enumerate() {
                    add_document(item.clone(), &format!("{place}.items[{i}]"), namespace, out);
                }
            }
        }
        ("metallb.io", "v1beta1", "IPAddressPool") => strict(document, reference, out, |o, v| o.pools.push(v)),
        ("metallb.io", "v1beta1", "BGPAdvertisement") => {
            strict(document, reference, out, |o, v| o.bgp_advertisements.push(v))
        }
        ("metallb.io", "v1beta1", "L2Advertisement") => {
            strict(document, reference, out, |o, v| o.l2_advertisements.push(v))
        }
        ("metallb.io", "v1beta1", "BFDProfile") => strict(document, reference, out, |o, v| o.bfd_profiles.push(v)),
        ("metallb.io", "v1beta1", "Community") => strict(document, reference, out, |o, v| o.communities.push(v)),
        ("metallb.io", "v1beta2", "BGPPeer") => strict(document, reference, out, |o, v| o.peers.push(v)),
        ("metallb.io", "v1beta1", "BGPPeer") => {
            out.warnings.push(ConfigWarning::new(
                &reference,
                "apiVersion",
                "metallb.io/v1beta1 BGPPeer is deprecated; metallb.io/v1beta2 has the same fields, so changing apiVersion is all it takes",
            ));
            strict(document, reference, out, |o, v: BGPPeer| o.peers.push(v))
        }
        ("metallb.io", "v1beta1", "ServiceL2Status" | "ServiceBGPStatus" | "ConfigurationState") => {}
        ("metallb.io", _, _) => out.errors.push(ConfigError::invalid(
            &reference,
            "apiVersion",
            format!(
                "{api_version} {kind} is not a kind ferrolb serves; metallb.io serves IPAddressPool, BGPPeer (v1beta1, v1beta2), BGPAdvertisement, L2Advertisement, BFDProfile, Community, ServiceL2Status, ServiceBGPStatus and ConfigurationState (v1beta1)"
            ),
        )),
        ("", "v1", "Service") => lenient(document, reference, out, |o, v| o.services.push(v)),
        ("", "v1", "Node") => lenient(document, reference, out, |o, v| o.nodes.push(v)),
        ("", "v1", "Namespace") => lenient(document, reference, out, |o, v| o.namespaces.push(v)),
        ("", "v1", "Secret") => lenient(document, reference, out, |o, v| o.secrets.push(v)),
        ("discovery.k8s.io", "v1", "EndpointSlice") => {
            lenient(document, reference, out, |o, v| o.endpoint_slices.push(v))
        }
        _ => {}
    }
}

fn object_ref(document: &Value, kind: &str, namespace: &str) -> ObjectRef {
    let meta = document.get("metadata");
    let field = |name: &str| {
        meta.and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let cluster_scoped = matches!(kind, "Node" | "Namespace");
    let ns = if cluster_scoped {
        String::new()
    } else {
        field("namespace").unwrap_or_else(|| namespace.to_string())
    };
    ObjectRef::new(kind, &ns, &field("name").unwrap_or_default())
}

fn decode<T: DeserializeOwned>(
    document: &Value,
    reference: &ObjectRef,
) -> Result<T, Box<ConfigError>> {
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "(object)".to_string()
        } else {
            path
        };
        Box::new(ConfigError::invalid(
            reference,
            field,
            e.into_inner().to_string(),
        ))
    })
}

fn lenient<T: DeserializeOwned>(
    document: Value,
    reference: ObjectRef,
    out: &mut Manifests,
    add: impl FnOnce(&mut ClusterObjects, T),
) {
    match decode(&document, &reference) {
        Ok(value) => add(&mut out.objects, value),
        Err(e) => out.errors.push(*e),
    }
}

fn strict<T: DeserializeOwned + Serialize>(
    mut document: Value,
    reference: ObjectRef,
    out: &mut Manifests,
    add: impl FnOnce(&mut ClusterObjects, T),
) {
    // The CRDs default a missing spec to {} (MetalLB's examples omit it); do as the apiserver does.
    if let Some(fields) = document.as_object_mut() {
        fields
            .entry("spec")
            .or_insert_with(|| Value::Object(Default::default()));
    }
    let value: T = match decode(&document, &reference) {
        Ok(v) => v,
        Err(e) => {
            out.errors.push(*e);
            return;
        }
    };
    let echoed = serde_json::to_value(&value).unwrap_or(Value::Null);
    let unknown = unknown_fields(&document, &echoed, "");
    if unknown.is_empty() {
        add(&mut out.objects, value);
    } else {
        for field in unknown {
            out.errors.push(ConfigError::invalid(
                &reference,
                field,
                "unknown field: the API has no such field (check the spelling)",
            ));
        }
    }
}

/// Paths present (and not null) in `input` but absent from `echoed`, the typed object
/// serialised back. The API types keep every field they know, so what is missing is unknown.
fn unknown_fields(input: &Value, echoed: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    match (input, echoed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match b.get(key) {
                    None if !value.is_null() => out.push(child),
                    None => {}
                    Some(echo) => out.extend(unknown_fields(value, echo, &child)),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (value, echo)) in a.iter().zip(b).enumerate() {
                out.extend(unknown_fields(value, echo, &format!("{path}[{i}]")));
            }
        }
        _ => {}
    }
    out
}

/// A one-line count of the ferrolb objects read, for tool output.
pub fn kinds_summary(objects: &ClusterObjects) -> String {
    let counts = [
        (objects.pools.len(), "IPAddressPool"),
        (objects.peers.len(), "BGPPeer"),
        (objects.bgp_advertisements.len(), "BGPAdvertisement"),
        (objects.l2_advertisements.len(), "L2Advertisement"),
        (objects.bfd_profiles.len(), "BFDProfile"),
        (objects.communities.len(), "Community"),
    ];
    let parts: Vec<String> = counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, k)| format!("{n} {k}"))
        .collect();
    if parts.is_empty() {
        "no ferrolb objects".to_string()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(m: &Manifests) -> Vec<String> {
        m.errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn multi_document_yaml_is_sorted_by_kind_and_other_kinds_are_skipped() {
        let text = "\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: a}
spec: {addresses: [10.0.0.0/24]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {zone: a}}
---
";
        let m = parse(text, "f.yaml", "metallb-system").unwrap();
        assert!(m.errors.is_empty(), "{:?}", errors(&m));
        assert_eq!(m.objects.pools.len(), 1);
        assert_eq!(m.objects.nodes.len(), 1);
    }

    #[test]
    fn lists_are_unpacked() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"metallb.io/v1beta1","kind":"BFDProfile","metadata":{"name":"fast"},"spec":{"receiveInterval":100}}]}"#;
        let m = parse(text, "l.json", "metallb-system").unwrap();
        assert_eq!(m.objects.bfd_profiles.len(), 1);
    }

    #[test]
    fn unknown_fields_are_errors_with_their_path() {
        let text = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {adresses: [10.0.0.0/24], addresses: []}\n";
        let m = parse(text, "f.yaml", "metallb-system").unwrap();
        assert_eq!(
            errors(&m),
            [
                "IPAddressPool/metallb-system/a: spec.adresses: unknown field: the API has no such field (check the spelling)"
            ]
        );
        assert!(m.objects.pools.is_empty());
    }

    #[test]
    fn wrong_types_name_the_field() {
        let text = "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p, namespace: metallb-system}\nspec: {myASN: many, peerASN: 1, peerAddress: 10.0.0.1}\n";
        let m = parse(text, "f.yaml", "metallb-system").unwrap();
        let e = errors(&m);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("BGPPeer/metallb-system/p: spec.myASN: invalid type: string \"many\""),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_metallb_kinds_and_missing_kind_are_errors() {
        let m = parse(
            "apiVersion: metallb.io/v1beta1\nkind: IPAdressPool\nmetadata: {name: a}\n",
            "f.yaml",
            "ns",
        )
        .unwrap();
        assert!(errors(&m)[0].starts_with("IPAdressPool/ns/a: apiVersion: metallb.io/v1beta1 IPAdressPool is not a kind ferrolb serves"));
        let m = parse("foo: bar\n", "f.yaml", "ns").unwrap();
        assert_eq!(
            errors(&m),
            [
                "document/f.yaml#1: apiVersion: must be set: every document must be a Kubernetes object with apiVersion and kind"
            ]
        );
    }

    #[test]
    fn v1beta1_peers_are_read_with_a_deprecation_warning() {
        let text = "apiVersion: metallb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1, holdTime: 90s}\n";
        let m = parse(text, "f.yaml", "metallb-system").unwrap();
        assert!(m.errors.is_empty());
        assert_eq!(m.objects.peers[0].spec.hold_time.as_deref(), Some("90s"));
        assert_eq!(m.warnings.len(), 1);
    }

    #[test]
    fn broken_yaml_is_a_syntax_error() {
        let err = parse("a: [\n", "bad.yaml", "ns").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad.yaml: not valid YAML or JSON"),
            "{err}"
        );
    }

    #[test]
    fn files_with_more_documents_than_the_parser_default_parse() {
        let text: String = (0..3000)
            .map(|i| format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: n{i}}}\n"))
            .collect();
        let parsed = parse(&text, "many", "metallb-system").unwrap();
        assert_eq!(parsed.objects.namespaces.len(), 3000);
    }
}
