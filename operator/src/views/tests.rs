use super::*;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn endpoint(node: &str, ready: Option<bool>, serving: Option<bool>) -> Endpoint {
    Endpoint {
        addresses: vec!["10.244.0.5".into()],
        node_name: Some(node.into()),
        conditions: Some(EndpointConditions {
            ready,
            serving,
            terminating: serving.map(|_| ready == Some(false)),
        }),
        ..Endpoint::default()
    }
}

fn slice(service: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("web".into()),
            name: Some(format!("{service}-abcde")),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), service.to_string())].into()),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: None,
    }
}

#[test]
fn ready_unset_ready_true_and_terminating_serving_endpoints_serve() {
    let summary = serving_endpoints(&[
        slice(
            "a",
            vec![
                endpoint("n1", None, None),
                endpoint("n2", Some(true), None),
                endpoint("n3", Some(false), Some(true)),
                endpoint("n4", Some(false), Some(false)),
            ],
        ),
        slice("b", vec![endpoint("n1", Some(false), None)]),
    ]);
    let a = &summary[&ServiceKey::new("web", "a")];
    assert_eq!(a.nodes.iter().collect::<Vec<_>>(), ["n1", "n2", "n3"]);
    assert!(a.any);
    let b = &summary[&ServiceKey::new("web", "b")];
    assert!(!b.any && b.nodes.is_empty());
}

#[test]
fn terminating_endpoints_count_only_while_no_node_has_a_ready_one() {
    // A drain: n2's pod terminates (still serving) while n1's is ready.
    let draining = serving_endpoints(&[slice(
        "a",
        vec![
            endpoint("n1", Some(true), Some(true)),
            endpoint("n2", Some(false), Some(true)),
        ],
    )]);
    let a = &draining[&ServiceKey::new("web", "a")];
    assert!(a.on_node("n1") && !a.on_node("n2"));
    assert!(a.nodes.contains("n2") && !a.ready.contains("n2") && a.ready.contains("n1"));
    // The last pods terminating: their nodes keep it until they stop serving.
    let last = serving_endpoints(&[slice("a", vec![endpoint("n2", Some(false), Some(true))])]);
    let a = &last[&ServiceKey::new("web", "a")];
    assert!(a.on_node("n2") && a.ready.is_empty());
    // Ready in another slice of the same Service counts too.
    let mut split = serving_endpoints(&[slice("a", vec![endpoint("n2", Some(false), Some(true))])]);
    let other = serving_endpoints(&[slice("a", vec![endpoint("n1", None, None)])]);
    split
        .get_mut(&ServiceKey::new("web", "a"))
        .unwrap()
        .merge(&other[&ServiceKey::new("web", "a")]);
    assert!(!split[&ServiceKey::new("web", "a")].on_node("n2"));
}

#[test]
fn node_sets_are_sorted_without_repeats_and_share_names() {
    let mut a: NodeSet = ["n3", "n1", "n3"].into_iter().collect();
    assert_eq!(a.iter().collect::<Vec<_>>(), ["n1", "n3"]);
    let b: NodeSet = ["n2", "n1"].into_iter().collect();
    a.extend(&b);
    assert_eq!(a.iter().collect::<Vec<_>>(), ["n1", "n2", "n3"]);
    assert!(a.contains("n2") && !a.contains("n4") && a.len() == 3);
    // One copy of each name, however many sets hold it.
    assert!(Arc::ptr_eq(&a.0[0], &b.0[0]));
    let mut c = NodeSet::default();
    assert!(c.is_empty());
    c.insert("n1");
    assert!(Arc::ptr_eq(&c.0[0], &a.0[0]));
}

#[test]
fn endpoints_without_addresses_do_not_serve() {
    let mut e = endpoint("n1", Some(true), None);
    e.addresses.clear();
    let summary = serving_endpoints(&[slice("a", vec![e])]);
    assert!(!summary[&ServiceKey::new("web", "a")].any);
}

#[test]
fn only_load_balancers_of_our_class_are_in_scope() {
    let mut service = Service::default();
    let lb = |s: &Service| LbService::from_service(s);
    assert!(!lb(&service).in_scope(&ServiceScope::default()));
    service.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
        type_: Some("LoadBalancer".into()),
        ..Default::default()
    });
    assert!(lb(&service).in_scope(&ServiceScope::default()));
    let ours = ServiceScope {
        load_balancer_class: Some("ferrolb".into()),
    };
    assert!(!lb(&service).in_scope(&ours));
    if let Some(spec) = service.spec.as_mut() {
        spec.load_balancer_class = Some("ferrolb".into());
    }
    assert!(lb(&service).in_scope(&ours));
    assert!(!lb(&service).in_scope(&ServiceScope::default()));
}

#[test]
fn ingress_entries_that_are_not_ips_are_dropped() {
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
    let ingress = |ip: &str| LoadBalancerIngress {
        ip: Some(ip.into()),
        ..Default::default()
    };
    let service = Service {
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![
                    ingress("198.51.100.10\nrouter bgp 1"),
                    ingress("198.51.100.11"),
                    ingress("2001:db8::1 bfd"),
                ]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ips: Vec<String> = LbService::from_service(&service)
        .ingress
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(ips, ["198.51.100.11"]);
}

#[test]
fn the_out_of_service_taint_marks_a_node_whatever_its_value_and_effect() {
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    let node = |taints: Vec<Taint>| Node {
        metadata: ObjectMeta {
            name: Some("n1".into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(taints),
            ..Default::default()
        }),
        ..Default::default()
    };
    let taint = |key: &str, value: Option<&str>, effect: &str| Taint {
        key: key.into(),
        value: value.map(str::to_string),
        effect: effect.into(),
        ..Default::default()
    };
    assert!(
        NodeView::from_node(&node(vec![taint(
            OUT_OF_SERVICE_TAINT,
            Some("nodeshutdown"),
            "NoExecute"
        )]))
        .out_of_service
    );
    assert!(
        NodeView::from_node(&node(vec![taint(OUT_OF_SERVICE_TAINT, None, "NoSchedule")]))
            .out_of_service
    );
    assert!(
        !NodeView::from_node(&node(vec![taint(
            "node.kubernetes.io/unschedulable",
            None,
            "NoSchedule"
        )]))
        .out_of_service
    );
}
