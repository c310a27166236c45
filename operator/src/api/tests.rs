//! Schema-level guarantees of the API: structural schemas, and BGPPeer's two versions being
//! one wire format.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

use super::*;

fn schema_of<'a>(crd: &'a CustomResourceDefinition, version: &str) -> &'a JSONSchemaProps {
    crd.spec
        .versions
        .iter()
        .find(|v| v.name == version)
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .unwrap_or_else(|| {
            panic!(
                "{} has no schema for {version}",
                crd.metadata.name.as_deref().unwrap_or_default()
            )
        })
}

/// Every node has a type, no node keeps unknown fields, no `nullable`, only formats the
/// apiserver knows.
fn assert_structural(schema: &JSONSchemaProps, path: &str) {
    assert!(
        schema.type_.is_some() || schema.x_kubernetes_int_or_string == Some(true),
        "{path}: no type"
    );
    assert_eq!(
        schema.x_kubernetes_preserve_unknown_fields, None,
        "{path}: preserves unknown fields"
    );
    assert_eq!(schema.nullable, None, "{path}: nullable");
    assert!(
        schema.any_of.is_none() && schema.one_of.is_none(),
        "{path}: anyOf/oneOf"
    );
    if let Some(format) = &schema.format {
        assert!(
            ["int32", "int64", "date-time"].contains(&format.as_str()),
            "{path}: format {format}"
        );
    }
    for (name, child) in schema.properties.iter().flatten() {
        assert_structural(child, &format!("{path}.{name}"));
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
        assert_structural(items, &format!("{path}[]"));
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = &schema.additional_properties {
        assert_structural(extra, &format!("{path}{{}}"));
    }
}

#[test]
fn every_crd_is_namespaced_with_a_structural_schema_and_status() {
    let all = crds();
    let names: Vec<_> = all
        .iter()
        .map(|c| c.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "bfdprofiles.metallb.io",
            "bgpadvertisements.metallb.io",
            "bgppeers.metallb.io",
            "communities.metallb.io",
            "configurationstates.metallb.io",
            "ipaddresspools.metallb.io",
            "l2advertisements.metallb.io",
            "servicebgpstatuses.metallb.io",
            "servicel2statuses.metallb.io",
        ]
    );
    for crd in &all {
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.group, GROUP);
        for version in &crd.spec.versions {
            assert!(
                version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some(),
                "{names:?}: no status"
            );
            assert_structural(schema_of(crd, &version.name), &crd.spec.names.kind);
        }
        assert_eq!(crd.spec.versions.iter().filter(|v| v.storage).count(), 1);
    }
}

#[test]
fn spec_is_optional_where_metallb_allows_omitting_it() {
    for crd in crds() {
        for version in &crd.spec.versions {
            let root = schema_of(&crd, &version.name);
            let spec = &root.properties.as_ref().unwrap()["spec"];
            let has_required_fields = spec.required.as_ref().is_some_and(|r| !r.is_empty());
            let root_requires_spec = root
                .required
                .as_ref()
                .is_some_and(|r| r.contains(&"spec".to_string()));
            assert_eq!(
                root_requires_spec, has_required_fields,
                "{:?}",
                crd.metadata.name
            );
            assert_eq!(
                spec.default.is_some(),
                !has_required_fields,
                "{:?}",
                crd.metadata.name
            );
        }
    }
}

#[test]
fn ip_address_pool_prints_addresses_and_counts() {
    let crd = IPAddressPool::crd();
    let columns: Vec<_> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.json_path.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            ".spec.autoAssign",
            ".spec.avoidBuggyIPs",
            ".spec.addresses",
            ".status.assignedIPv4",
            ".status.availableIPv4",
            ".status.assignedIPv6",
            ".status.availableIPv6"
        ]
    );
    let schema = schema_of(&crd, "v1beta1");
    let spec = &schema.properties.as_ref().unwrap()["spec"];
    assert_eq!(
        spec.required.as_deref(),
        Some(&["addresses".to_string()][..])
    );
    assert_eq!(
        spec.properties.as_ref().unwrap()["autoAssign"]
            .default
            .as_ref()
            .map(|d| &d.0),
        Some(&Value::Bool(true))
    );
}

#[test]
fn cel_rules_are_where_metallb_has_them() {
    let rules = |crd: &CustomResourceDefinition, version: &str, path: &[&str]| -> Vec<String> {
        let mut node = schema_of(crd, version);
        for p in path {
            node = &node.properties.as_ref().unwrap()[*p];
        }
        node.x_kubernetes_validations
            .iter()
            .flatten()
            .map(|r| r.rule.clone())
            .collect()
    };
    let peer = peer::crd();
    assert_eq!(
        rules(&peer, "v1beta2", &["spec", "enableGracefulRestart"]),
        ["self == oldSelf"]
    );
    assert_eq!(rules(&peer, "v1beta2", &["spec", "connectTime"]).len(), 2);
    assert_eq!(
        rules(&BGPAdvertisement::crd(), "v1beta1", &["spec"]).len(),
        1
    );
    for crd in [ServiceL2Status::crd(), ServiceBGPStatus::crd()] {
        for field in ["node", "serviceName", "serviceNamespace"] {
            assert_eq!(
                rules(&crd, "v1beta1", &["status", field]),
                ["self == oldSelf"]
            );
        }
    }
}

#[test]
fn bgp_peer_serves_v1beta1_and_stores_v1beta2_without_a_conversion_webhook() {
    let crd = peer::crd();
    let versions: Vec<_> = crd
        .spec
        .versions
        .iter()
        .map(|v| (v.name.as_str(), v.served, v.storage, v.deprecated))
        .collect();
    assert_eq!(
        versions,
        [
            ("v1beta1", true, false, Some(true)),
            ("v1beta2", true, true, None)
        ]
    );
    let conversion = crd.spec.conversion.as_ref().unwrap();
    assert_eq!(conversion.strategy, "None");
    assert!(conversion.webhook.is_none());
}

#[test]
fn bgp_peer_versions_share_every_field_so_no_conversion_is_needed() {
    let crd = peer::crd();
    let spec = |v: &str| schema_of(&crd, v).properties.as_ref().unwrap()["spec"].clone();
    let (old, new) = (spec("v1beta1"), spec("v1beta2"));
    assert_eq!(
        old.properties, new.properties,
        "v1beta1 and v1beta2 must have identical fields"
    );
    assert_eq!(
        old.required.as_deref(),
        Some(&["myASN".to_string(), "peerASN".into(), "peerAddress".into()][..])
    );
    assert_eq!(new.required.as_deref(), Some(&["myASN".to_string()][..]));
    // MetalLB's v1beta1 fields, with their JSON types.
    let v1beta1_fields = [
        ("myASN", "integer"),
        ("peerASN", "integer"),
        ("peerAddress", "string"),
        ("sourceAddress", "string"),
        ("peerPort", "integer"),
        ("holdTime", "string"),
        ("keepaliveTime", "string"),
        ("routerID", "string"),
        ("nodeSelectors", "array"),
        ("password", "string"),
        ("bfdProfile", "string"),
        ("ebgpMultiHop", "boolean"),
    ];
    let props = old.properties.unwrap();
    for (field, kind) in v1beta1_fields {
        assert_eq!(props[field].type_.as_deref(), Some(kind), "{field}");
    }
}

const V1BETA1_PEERS: &str = r#"
apiVersion: metallb.io/v1beta1
kind: BGPPeer
metadata:
  name: sample
  namespace: metallb-system
spec:
  myASN: 64500
  peerASN: 64501
  peerAddress: 10.0.0.1
---
apiVersion: metallb.io/v1beta1
kind: BGPPeer
metadata:
  name: full
  namespace: metallb-system
  labels: {team: net}
spec:
  myASN: 4200000000
  peerASN: 64501
  peerAddress: fc00:f853:ccd:e793::1
  sourceAddress: fc00:f853:ccd:e793::2
  peerPort: 1179
  holdTime: 1m30s
  keepaliveTime: 30s
  routerID: 10.10.10.10
  password: secret
  bfdProfile: fast
  ebgpMultiHop: true
  nodeSelectors:
  - matchLabels:
      rack: frontend
    matchExpressions:
    - key: network-speed
      operator: NotIn
      values: [slow]
"#;

#[test]
fn v1beta1_documents_round_trip_through_the_v1beta2_types() {
    let documents: Vec<Value> = serde_saphyr::from_multiple(V1BETA1_PEERS).unwrap();
    assert_eq!(documents.len(), 2);
    for original in documents {
        let peer: BGPPeer = serde_json::from_value(original.clone()).unwrap();
        let mut back = serde_json::to_value(&peer).unwrap();
        back.as_object_mut().unwrap().remove("status");
        // Under `conversion.strategy: None` the apiserver changes apiVersion and nothing else.
        let mut expected = original.clone();
        expected["apiVersion"] = Value::from("metallb.io/v1beta2");
        assert_eq!(
            back, expected,
            "v1beta1 document changed beyond its apiVersion"
        );
        let mut as_v1beta1 = back.clone();
        as_v1beta1["apiVersion"] = Value::from("metallb.io/v1beta1");
        assert_eq!(
            as_v1beta1, original,
            "v1beta2 object does not read back as the v1beta1 document"
        );
    }
}

#[test]
fn committed_crds_match_the_generated_ones() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let files = crd_files().unwrap();
    let mut expected_names: Vec<_> = files.iter().map(|(n, _)| n.clone()).collect();
    for (name, yaml) in &files {
        let path = dir.join(name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, yaml).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == *yaml,
            "crds/{name} differs from `ferrolb crds`; run `UPDATE_GOLDEN=1 cargo test -p ferrolb committed_crds` and commit"
        );
    }
    let mut present: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    present.sort();
    expected_names.sort();
    assert_eq!(
        present, expected_names,
        "crds/ holds files ferrolb no longer generates"
    );
}
