use super::*;
use crate::config::LoadOptions;
use crate::dry_run;
use crate::manifest;
use crate::views::{ServiceKey, ServiceScope};

/// Every legacy field, in a ConfigMap as MetalLB's docs show it.
const FULL: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  namespace: metallb-system
  name: config
data:
  config: |
    peers:
    - peer-address: 10.0.0.1
      peer-asn: 64501
      my-asn: 64500
      peer-port: 1179
      hold-time: 90s
      keepalive-time: 30s
      router-id: 10.0.0.100
      source-address: 10.0.0.5
      password: s3cret
      bfd-profile: fast
      ebgp-multihop: true
      node-selectors:
      - match-labels:
          rack: frontend
        match-expressions:
        - key: network-speed
          operator: NotIn
          values: [slow]
    - peer-address: 10.0.0.2
      peer-asn: 64500
      my-asn: 64500
      router-id: 10.0.0.100
    bgp-communities:
      no-export: 65535:65281
    bfd-profiles:
    - name: fast
      receive-interval: 179
      transmit-interval: 180
      detect-multiplier: 4
      echo-interval: 62
      echo-mode: false
      passive-mode: true
      minimum-ttl: 254
    address-pools:
    - name: bgp-space
      protocol: bgp
      addresses:
      - 198.51.100.0/24
      - 2001:db8:1::/64
      avoid-buggy-ips: true
      auto-assign: true
      bgp-advertisements:
      - aggregation-length: 32
        aggregation-length-v6: 128
        localpref: 150
        communities: [no-export, 64512:7]
      - aggregation-length: 24
        aggregation-length-v6: 64
    - name: l2-space
      protocol: layer2
      auto-assign: false
      addresses:
      - 192.0.2.10-192.0.2.20
"#;

fn load(yaml: &str) -> (crate::config::ClusterObjects, crate::config::Config) {
    dry_run::fixture(yaml)
}

fn kinds(converted: &Converted) -> Vec<String> {
    converted
        .documents
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d.object["kind"].as_str().unwrap(),
                d.object["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn every_legacy_field_becomes_its_resource_field_and_validates() {
    let converted = convert(FULL, "ignored").unwrap();
    assert_eq!(
        kinds(&converted),
        [
            "BFDProfile/fast",
            "Community/communities",
            "IPAddressPool/bgp-space",
            "IPAddressPool/l2-space",
            "BGPAdvertisement/bgp-space-1",
            "BGPAdvertisement/bgp-space-2",
            "L2Advertisement/l2-space",
            "BGPPeer/peer-10-0-0-1",
            "BGPPeer/peer-10-0-0-2",
        ]
    );
    let yaml = converted.yaml().unwrap();
    let (_, config) = load(&yaml);
    let peer = &config.peers["peer-10-0-0-1"];
    assert_eq!(peer.my_asn, 64500);
    assert_eq!(peer.bfd_profile.as_deref(), Some("fast"));
    let pool = &config.pools["bgp-space"];
    assert!(pool.avoid_buggy_ips && pool.auto_assign);
    assert!(!config.pools["l2-space"].auto_assign);
    let ad = &config.bgp_advertisements["bgp-space-1"];
    assert_eq!(ad.local_pref, Some(150));
    assert_eq!(
        config.bgp_advertisements["bgp-space-2"].aggregation_length,
        24
    );
    let bfd = &serde_json::to_value(&converted.documents[0].object).unwrap()["spec"];
    assert_eq!(bfd["echoMode"], false);
    assert_eq!(bfd["passiveMode"], true);
    assert_eq!(bfd["minimumTtl"], 254);
    assert!(
        yaml.contains("# peers[0]\n# the password stays inline"),
        "{yaml}"
    );
    // Namespace from the ConfigMap.
    assert!(
        converted
            .documents
            .iter()
            .all(|d| d.object["metadata"]["namespace"] == "metallb-system")
    );
}

/// Nodes and Services to see what the converted configuration announces.
const CLUSTER: &str = r#"
---
apiVersion: v1
kind: Node
metadata: {name: front, labels: {kubernetes.io/hostname: front, rack: frontend, network-speed: fast}}
---
apiVersion: v1
kind: Node
metadata: {name: slow, labels: {kubernetes.io/hostname: slow, rack: frontend, network-speed: slow}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {type: LoadBalancer, clusterIP: 10.96.0.10, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 198.51.100.7}]}}
---
apiVersion: v1
kind: Service
metadata: {name: printer, namespace: shop, annotations: {metallb.universe.tf/address-pool: l2-space}}
spec: {type: LoadBalancer, clusterIP: 10.96.0.11, ports: [{port: 631}]}
"#;

#[test]
fn a_dual_mode_configuration_announces_what_the_old_one_meant() {
    let yaml = convert(FULL, "metallb-system").unwrap().yaml().unwrap();
    let (objects, config) = load(&format!("{yaml}{CLUSTER}"));
    let scope = ServiceScope::default();
    let front = dry_run::prepare(config.clone(), &objects, "front", scope.clone());
    let announced = front.announcements();
    let sessions = announced["bgp"]["sessions"].as_array().unwrap();
    // The node-selected peer (rack frontend, speed not slow) and the unselected one.
    let peers: Vec<&str> = sessions
        .iter()
        .map(|s| s["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers, ["peer-10-0-0-1", "peer-10-0-0-2"]);
    let prefixes: Vec<(String, Value)> = sessions[1]["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["prefix"].as_str().unwrap().to_string(), p.clone()))
        .collect();
    // Two advertisements: the /32 with localPref and both communities (alias resolved),
    // and the /24 aggregate.
    let names: Vec<&str> = prefixes.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["198.51.100.0/24", "198.51.100.7/32"]);
    assert_eq!(prefixes[1].1["localPref"], 150, "{announced}");
    let communities = prefixes[1].1["communities"].to_string();
    assert!(
        communities.contains("65535:65281") && communities.contains("64512:7"),
        "{communities}"
    );
    // The layer-2 Service gets an IP from the layer2 pool, answered by one node.
    let l2: Vec<&str> = ["front", "slow"]
        .iter()
        .filter(|n| {
            dry_run::prepare(config.clone(), &objects, n, scope.clone()).announcements()["l2"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s["service"] == "shop/printer"))
        })
        .copied()
        .collect();
    assert_eq!(l2.len(), 1, "one owner: {l2:?}");
    let decisions = dry_run::allocate(&config, &objects, &scope);
    assert_eq!(
        decisions[&ServiceKey::new("shop", "printer")]
            .pool
            .as_deref(),
        Some("l2-space")
    );
    // The slow node is left out by the match-expression: only the unselected peer.
    let slow = dry_run::prepare(config, &objects, "slow", scope).announcements();
    let peers: Vec<&str> = slow["bgp"]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers, ["peer-10-0-0-2"]);
}

#[test]
fn the_bare_file_converts_and_defaults_are_one_advertisement() {
    let converted = convert(
            "address-pools:\n- name: default\n  protocol: bgp\n  addresses: [198.51.100.0/24]\npeers:\n- {peer-address: 'fd00::1', peer-asn: 64501, my-asn: 64500}\n- {peer-address: 'fd00::1', peer-asn: 64502, my-asn: 64500}\n",
            "lb",
        )
        .unwrap();
    assert_eq!(
        kinds(&converted),
        [
            "IPAddressPool/default",
            "BGPAdvertisement/default",
            "BGPPeer/peer-fd00--1",
            "BGPPeer/peer-fd00--1-2",
        ]
    );
    assert_eq!(converted.documents[0].object["metadata"]["namespace"], "lb");
    // Two peers at one address are two sessions FRR cannot hold on one node: the
    // converted output says so exactly as `ferrolb validate` would.
    let yaml = converted.yaml().unwrap();
    let objects = manifest::parse(&yaml, "converted", "lb").unwrap().objects;
    let errors = crate::config::load(
        &objects,
        &LoadOptions {
            namespace: "lb".into(),
        },
    )
    .unwrap_err();
    assert!(
        errors[0]
            .to_string()
            .contains("already has a session to fd00::1"),
        "{errors:?}"
    );
    let converted = convert(
            "address-pools:\n- name: default\n  protocol: bgp\n  addresses: [198.51.100.0/24]\npeers:\n- {peer-address: 'fd00::1', peer-asn: 64501, my-asn: 64500}\n",
            "lb",
        )
        .unwrap();
    let yaml = converted.yaml().unwrap();
    let objects = manifest::parse(&yaml, "converted", "lb").unwrap().objects;
    crate::config::load(
        &objects,
        &LoadOptions {
            namespace: "lb".into(),
        },
    )
    .unwrap();
}

#[test]
fn what_has_no_equivalent_is_a_comment_and_bad_input_an_error() {
    let converted = convert(
            "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [192.0.2.0/28]\n  bgp-advertisements: [{localpref: 1}]\n  colour: blue\nmystery: 1\n",
            "metallb-system",
        )
        .unwrap();
    let yaml = converted.yaml().unwrap();
    assert!(
        yaml.contains("# legacy field \"mystery\" (1) is not a MetalLB field"),
        "{yaml}"
    );
    assert!(
        yaml.contains("address-pools[0]: legacy field \"colour\""),
        "{yaml}"
    );
    assert!(
        yaml.contains("bgp-advertisements of a layer2 pool were ignored"),
        "{yaml}"
    );
    assert_eq!(
        convert(
            "address-pools:\n- name: a\n  protocol: ospf\n  addresses: []\n",
            "x"
        )
        .unwrap_err(),
        ConvertError::Protocol {
            index: 0,
            name: "a".into(),
            protocol: "ospf".into()
        }
    );
    assert_eq!(
        convert(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: m}\ndata: {}\n",
            "x"
        )
        .unwrap_err(),
        ConvertError::NoConfig("m/config".into())
    );
    assert!(matches!(
        convert("peers: 3\n", "x"),
        Err(ConvertError::Syntax(_))
    ));
}
