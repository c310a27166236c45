//! The controller's kube shell against a scripted API server (tower-test): the exact requests
//! of a pass, what a second pass over a cache that has not caught up does, and the Lease.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::cache::Caches;
use super::metrics::Metrics;
use super::reconcile::Reconciler;
use super::writer::ApiWriter;
use crate::config::{ClusterObjects, LoadOptions};
use crate::views::ServiceScope;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Some(map) = target.as_object_mut() else {
        return;
    };
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn mock() -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// One request as the server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    uri: String,
    content_type: String,
    body: Value,
}

async fn next(
    handle: &mut Handle,
) -> Option<(Seen, tower_test::mock::SendResponse<Response<Body>>)> {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .ok()??;
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = request.into_body().collect_bytes().await.ok()?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).ok()?
    };
    Some((
        Seen {
            method,
            uri,
            content_type,
            body,
        },
        send,
    ))
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, code: StatusCode, body: &Value) {
    let response = Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .expect("response");
    send.send_response(response);
}

/// What a server would return for a write of `seen`: the body, completed with the metadata
/// and spec a typed client needs to decode it.
fn echo(seen: &Seen) -> Value {
    let mut body = seen.body.clone();
    if !body.is_object() {
        body = json!({});
    }
    let path = seen.uri.split('?').next().unwrap_or_default();
    let name = path
        .trim_end_matches("/status")
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if body.get("metadata").is_none() {
        body["metadata"] = json!({ "name": name });
    }
    if body.get("spec").is_none() {
        body["spec"] = if path.contains("/ipaddresspools/") {
            json!({ "addresses": [] })
        } else {
            json!({})
        };
    }
    body
}

/// Whether nothing more is asked within a short while.
async fn quiet(handle: &mut Handle) -> bool {
    tokio::time::timeout(Duration::from_millis(50), handle.next_request())
        .await
        .is_err()
}

const INPUT: &str = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: prod, namespace: metallb-system, resourceVersion: "3"}
spec: {addresses: [10.0.0.0/31]}
---
apiVersion: v1
kind: Service
metadata: {name: kept, namespace: shop, resourceVersion: "5", uid: u-kept, annotations: {metallb.io/ip-allocated-from-pool: prod}}
spec: {type: LoadBalancer, clusterIP: 10.96.0.1, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 10.0.0.1, ipMode: VIP}]}}
---
apiVersion: v1
kind: Service
metadata: {name: new, namespace: shop, resourceVersion: "7", uid: u-new}
spec: {type: LoadBalancer, clusterIP: 10.96.0.2, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: waiting, namespace: shop, resourceVersion: "9", uid: u-waiting}
spec: {type: LoadBalancer, clusterIP: 10.96.0.3, ports: [{port: 80}]}
"#;

fn objects(input: &str) -> ClusterObjects {
    crate::manifest::parse(input, "t", "metallb-system")
        .expect("input parses")
        .objects
}

/// Answers requests with `reply` until one whose path ends with `last` (or none comes for
/// 5 s); returns them all.
async fn serve_until(
    handle: &mut Handle,
    last: &str,
    mut reply: impl FnMut(&Seen) -> (StatusCode, Value),
) -> Vec<Seen> {
    let mut seen = Vec::new();
    while let Some((request, send)) = next(handle).await {
        let (code, body) = reply(&request);
        respond(send, code, &body);
        let path = request.uri.split('?').next().unwrap_or_default();
        let done = path.ends_with(last);
        seen.push(request);
        if done {
            break;
        }
    }
    seen
}

/// A reconciler over caches filled with an input, writing to a mocked API.
struct Fixture {
    input: ClusterObjects,
    caches: Caches,
    writer: ApiWriter,
    metrics: Metrics,
    reconciler: Reconciler,
    handle: Handle,
    now: Time,
}

fn fixture(input: &str, instance: Option<&str>) -> Fixture {
    let input = objects(input);
    let (client, handle) = mock();
    Fixture {
        caches: Caches::filled(&input),
        input,
        writer: ApiWriter::new(client, "metallb-system", instance.map(str::to_string), None),
        metrics: Metrics::default(),
        reconciler: Reconciler::new(LoadOptions::default(), ServiceScope::default()),
        handle,
        now: Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("time")),
    }
}

#[tokio::test]
async fn a_pass_makes_exactly_these_requests_and_a_second_pass_none() {
    let mut f = fixture(INPUT, Some("controller-0"));
    // The server keeps the Services and applies each patch, bumping the version by 100.
    let mut services: BTreeMap<String, Value> = f
        .input
        .services
        .iter()
        .map(|s| {
            (
                s.metadata.name.clone().unwrap_or_default(),
                serde_json::to_value(s).unwrap_or_default(),
            )
        })
        .collect();
    let server = serve_until(&mut f.handle, "ipaddresspools/prod/status", |request| {
        let path = request.uri.split('?').next().unwrap_or_default();
        let Some(name) = path
            .strip_prefix("/api/v1/namespaces/shop/services/")
            .map(|rest| rest.trim_end_matches("/status"))
        else {
            return (StatusCode::OK, echo(request));
        };
        let Some(service) = services.get_mut(name) else {
            return (StatusCode::NOT_FOUND, json!({}));
        };
        merge_patch(service, &request.body);
        let version: u64 = service["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        service["metadata"]["resourceVersion"] = json!((version + 100).to_string());
        (StatusCode::OK, service.clone())
    });
    let (report, seen) = tokio::join!(
        f.reconciler.pass(&f.caches, &f.writer, &f.metrics, &f.now),
        server
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!((report.assigned, report.pending, report.written), (2, 1, 1));

    let lines: Vec<String> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.uri))
        .collect();
    assert_eq!(
        lines,
        [
            "PATCH /apis/metallb.io/v1beta1/namespaces/metallb-system/configurationstates/controller?&force=true&fieldManager=ferrolb-controller",
            "PATCH /apis/metallb.io/v1beta1/namespaces/metallb-system/configurationstates/controller/status?&force=true&fieldManager=ferrolb-controller",
            "PATCH /api/v1/namespaces/shop/services/new/status?&fieldManager=ferrolb-controller",
            "PATCH /api/v1/namespaces/shop/services/new?&fieldManager=ferrolb-controller",
            "POST /apis/events.k8s.io/v1/namespaces/shop/events?",
            "POST /apis/events.k8s.io/v1/namespaces/shop/events?",
            "PATCH /apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools/prod/status?&fieldManager=ferrolb-controller",
        ],
        "{seen:#?}"
    );
    // ConfigurationState: server-side apply of the object, then its status.
    assert_eq!(seen[0].content_type, "application/apply-patch+yaml");
    assert_eq!(
        seen[0].body["metadata"]["labels"],
        json!({"metallb.io/component-type": "controller"})
    );
    assert_eq!(seen[1].body["status"]["result"], "Valid");
    let types: Vec<&Value> = seen[1].body["status"]["conditions"]
        .as_array()
        .map(|c| c.iter().map(|c| &c["type"]).collect())
        .unwrap_or_default();
    assert_eq!(
        types,
        [
            &json!("poolReconcilerValid"),
            &json!("configReconcilerValid")
        ]
    );
    // The Service: status with the precondition it was decided from, then the annotation
    // with the version the status write returned.
    assert_eq!(seen[2].content_type, "application/merge-patch+json");
    assert_eq!(
        seen[2].body,
        json!({
            "metadata": {"resourceVersion": "7"},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.0", "ipMode": "VIP"}]}}
        })
    );
    assert_eq!(
        seen[3].body,
        json!({"metadata": {
            "resourceVersion": "107",
            "annotations": {"metallb.io/ip-allocated-from-pool": "prod"}
        }})
    );
    // Events, as MetalLB's component, on the right objects.
    let allocated = &seen[4].body;
    assert_eq!(allocated["reason"], "IPAllocated");
    assert_eq!(allocated["type"], "Normal");
    assert_eq!(allocated["reportingController"], "metallb-controller");
    assert_eq!(allocated["reportingInstance"], "controller-0");
    assert_eq!(
        (
            &allocated["regarding"]["name"],
            &allocated["regarding"]["uid"]
        ),
        (&json!("new"), &json!("u-new"))
    );
    let failed = &seen[5].body;
    assert_eq!(failed["reason"], "AllocationFailed");
    assert_eq!(failed["type"], "Warning");
    assert_eq!(failed["regarding"]["name"], "waiting");
    let note = failed["note"].as_str().unwrap_or_default();
    assert!(note.contains("pool prod exhausted (2/2"), "{note}");
    // Pool status.
    assert_eq!(
        seen[6].body,
        json!({"status": {"assignedIPv4": 2, "assignedIPv6": 0, "availableIPv4": 0, "availableIPv6": 0}})
    );

    // The caches have not caught up with any of it: the second pass still writes nothing,
    // and in particular does not hand 10.0.0.0 to another Service.
    let report = f
        .reconciler
        .pass(&f.caches, &f.writer, &f.metrics, &f.now)
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!((report.written, report.events), (0, 0));
    assert!(quiet(&mut f.handle).await, "second pass made a request");
}

#[tokio::test]
async fn a_conflict_is_reported_and_its_events_held_back() {
    let mut f = fixture(INPUT, None);
    let server = serve_until(&mut f.handle, "ipaddresspools/prod/status", |request| {
        if request.uri.contains("/services/new/status") {
            let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "reason": "Conflict", "code": 409,
                                  "message": "the object has been modified"});
            (StatusCode::CONFLICT, conflict)
        } else {
            (StatusCode::OK, echo(request))
        }
    });
    let (report, seen) = tokio::join!(
        f.reconciler.pass(&f.caches, &f.writer, &f.metrics, &f.now),
        server
    );
    let seen: Vec<String> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.uri))
        .collect();
    assert_eq!(report.failures.len(), 1);
    assert!(report.failures[0].is_conflict());
    // No annotation patch after the failed status, and no IPAllocated for it; the pending
    // Service's event still goes out.
    assert!(
        !seen.iter().any(|s| s.contains("/services/new?")),
        "{seen:#?}"
    );
    assert_eq!(seen.iter().filter(|s| s.contains("/events")).count(), 1);
}

#[tokio::test]
async fn an_invalid_configuration_keeps_ips_and_is_reported() {
    let broken = format!(
        "{INPUT}---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: bad, namespace: metallb-system}}\nspec: {{addresses: [not-a-cidr]}}\n"
    );
    let mut f = fixture(&broken, None);
    let server = serve_until(
        &mut f.handle,
        "configurationstates/controller/status",
        |request| (StatusCode::OK, echo(request)),
    );
    let (report, seen) = tokio::join!(
        f.reconciler.pass(&f.caches, &f.writer, &f.metrics, &f.now),
        server
    );
    // Never loaded a valid configuration: only the state is written, no Service touched.
    assert!(report.stale);
    assert_eq!(report.written, 0);
    assert_eq!(seen.len(), 2);
    let status = &seen[1].body["status"];
    assert_eq!(status["result"], "Invalid");
    assert!(
        status["errorSummary"]
            .as_str()
            .unwrap_or_default()
            .contains("IPAddressPool/metallb-system/bad"),
        "{status}"
    );
    assert!(quiet(&mut f.handle).await);
}

fn options() -> super::Options {
    super::Options {
        namespace: "metallb-system".to_string(),
        scope: ServiceScope::default(),
        identity: Some("controller-0".to_string()),
        pod_uid: None,
        lease_name: "ferrolb-controller".to_string(),
        lease_duration: Duration::from_secs(5),
        lease_grace: Duration::from_secs(2),
        listeners: crate::http::Listeners {
            health: "127.0.0.1:0".parse().expect("address"),
            metrics: None,
            secure_metrics: None,
        },
        coalesce: Duration::from_millis(10),
        webhook: None,
    }
}

/// A Lease store behind the mock: GET, POST and PATCH (applied as a merge) on one Lease.
async fn serve_lease(mut handle: Handle, log: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
    const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/metallb-system/leases";
    let mut lease: Option<Value> = None;
    let mut version = 0_u64;
    while let Some((request, send)) = next(&mut handle).await {
        let path = request
            .uri
            .split('?')
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(path.starts_with(PATH), "{request:?}");
        let found = match (request.method.as_str(), &mut lease) {
            ("GET", Some(current)) => Some(current.clone()),
            ("GET", None) => None,
            ("POST", _) => {
                lease = Some(request.body.clone());
                lease.clone()
            }
            ("PATCH", Some(current)) => {
                merge_patch(current, &request.body);
                Some(current.clone())
            }
            _ => None,
        };
        match found {
            Some(mut object) => {
                version += 1;
                object["metadata"]["resourceVersion"] = json!(version.to_string());
                if let Some(stored) = &mut lease {
                    stored["metadata"]["resourceVersion"] = json!(version.to_string());
                }
                respond(send, StatusCode::OK, &object);
            }
            None => respond(
                send,
                StatusCode::NOT_FOUND,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "not found"}),
            ),
        }
        log.lock().expect("log").push(request);
    }
}

#[tokio::test]
async fn the_lease_is_taken_under_our_name_and_released_on_shutdown() {
    let (client, handle) = mock();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    tokio::spawn(serve_lease(handle, log.clone()));
    let manager = super::lease(client, &options())
        .build()
        .await
        .expect("lease manager");
    let (mut leading, task) = manager.watch().await;
    tokio::time::timeout(Duration::from_secs(5), leading.wait_for(|l| *l))
        .await
        .expect("became leader in time")
        .expect("lease task alive");
    {
        let log = log.lock().expect("log");
        let apply = log
            .iter()
            .find(|s| s.content_type == "application/apply-patch+yaml")
            .expect("the lock is taken with server-side apply");
        assert!(
            apply.uri.starts_with(
                "/apis/coordination.k8s.io/v1/namespaces/metallb-system/leases/ferrolb-controller?"
            ),
            "{apply:?}"
        );
        assert!(apply.uri.contains("fieldManager=ferrolb-controller-lease"));
        assert_eq!(apply.body["spec"]["holderIdentity"], "controller-0");
        assert_eq!(apply.body["spec"]["leaseDurationSeconds"], 5);
    }
    drop(leading);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("released in time")
        .expect("task joined")
        .expect("release succeeded");
    let log = log.lock().expect("log");
    let release = log
        .iter()
        .rev()
        .find(|s| s.method == "PATCH")
        .expect("a release patch");
    assert_eq!(release.body["spec"]["holderIdentity"], Value::Null);
    assert!(
        release.body["spec"]
            .as_object()
            .is_some_and(|spec| spec.contains_key("holderIdentity")),
        "release clears the holder: {release:?}"
    );
}

#[tokio::test]
async fn a_change_after_a_quiet_spell_is_not_held_and_one_within_a_burst_waits_out_the_window() {
    let window = Duration::from_millis(300);
    let quiet = std::time::Instant::now() - Duration::from_secs(5);
    let started = std::time::Instant::now();
    super::gather(quiet, window).await;
    assert!(started.elapsed() < window, "{:?}", started.elapsed());
    let started = std::time::Instant::now();
    super::gather(started, window).await;
    assert!(started.elapsed() >= window, "{:?}", started.elapsed());
    // A change late in the window waits only for what is left of it.
    let ended = std::time::Instant::now() - Duration::from_millis(200);
    let started = std::time::Instant::now();
    super::gather(ended, window).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(90) && waited < Duration::from_millis(280),
        "{waited:?}"
    );
}
