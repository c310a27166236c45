//! `ferrolb controller` against a real control plane of the pinned Kubernetes release
//! (`hack/k8s.sh` builds it once per machine). Everything is done as a user would: CRDs
//! (server-side, fully validated) and manifests applied with kubectl, results read back with
//! kubectl.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrolb_e2e::control_plane::ControlPlane;
use ferrolb_e2e::kubectl::Kubectl;
use ferrolb_e2e::paths::{self, Scratch};
use ferrolb_e2e::process::{Process, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

struct Lab {
    kubectl: Kubectl,
    plane: ControlPlane,
    scratch: Scratch,
}

impl Lab {
    fn start(name: &str) -> Result<Lab> {
        let scratch = Scratch::new(name)?;
        let plane = ControlPlane::start(None, scratch.path(), "127.0.0.1".parse()?)?;
        let kubectl = Kubectl::new(plane.kubeconfig());
        kubectl.apply_crds(&paths::repo().join("crds"), Duration::from_secs(30))?;
        kubectl.apply(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: metallb-system}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        )?;
        Ok(Lab {
            kubectl,
            plane,
            scratch,
        })
    }

    /// Starts a controller replica named `name`; returns it with its health/metrics port.
    fn controller(&self, name: &str) -> Result<(Process, u16)> {
        self.controller_with(name, &["--metrics-addr", "none"])
    }

    /// [`Lab::controller`] with `args`.
    fn controller_with(&self, name: &str, args: &[&str]) -> Result<(Process, u16)> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new(paths::ferrolb()?);
        command
            .arg("controller")
            .args(["--pod-name", name])
            .args(["--health-addr", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("KUBECONFIG", self.plane.kubeconfig())
            .env("FERROLB_LOG", "info,ferrolb=debug");
        let log = self.scratch.path().join(format!("{name}.log"));
        Ok((Process::spawn(name, command, &log)?, port))
    }

    fn ingress(&self, service: &str) -> Result<Vec<String>> {
        let object = self.kubectl.get(&["service", "-n", "shop", service])?;
        Ok(object["status"]["loadBalancer"]["ingress"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|i| i["ip"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until `service` holds exactly `ips`.
    fn wait_ingress(&self, service: &str, ips: &[&str]) -> Result<Duration> {
        let started = Instant::now();
        wait_for(&format!("{service} to hold {ips:?}"), WAIT, || {
            let now = self.ingress(service)?;
            Ok((now == ips).then_some(()))
        })
        .with_context(|| format!("{service} holds {:?}", self.ingress(service)))?;
        Ok(started.elapsed())
    }

    fn events(&self, service: &str) -> Result<Vec<(String, String)>> {
        let list = self.kubectl.get(&[
            "events",
            "-n",
            "shop",
            "--field-selector",
            &format!("involvedObject.name={service}"),
        ])?;
        Ok(list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|e| {
                        (
                            e["reason"].as_str().unwrap_or_default().to_string(),
                            e["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn state(&self) -> Result<Value> {
        Ok(self
            .kubectl
            .get(&["configurationstate", "-n", "metallb-system", "controller"])?["status"]
            .clone())
    }

    fn lease_holder(&self) -> Result<Option<String>> {
        let lease = self
            .kubectl
            .get(&["lease", "-n", "metallb-system", "ferrolb-controller"])?;
        Ok(lease["spec"]["holderIdentity"].as_str().map(str::to_string))
    }
}

fn service(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop, annotations: {{{annotations}}}}}\nspec: {{type: LoadBalancer, selector: {{app: {name}}}, ports: [{{port: 80, protocol: TCP}}]}}\n---\n"
    )
}

fn pool(addresses: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: prod, namespace: metallb-system}}\nspec: {{addresses: [{addresses}]}}\n"
    )
}

fn metrics(port: u16) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

fn has(events: &[(String, String)], reason: &str, fragment: &str) -> bool {
    events
        .iter()
        .any(|(r, m)| r == reason && m.contains(fragment))
}

#[test]
fn allocation_follows_the_pools_and_survives_restarts_and_bad_config() -> Result<()> {
    let lab = Lab::start("alloc")?;
    lab.kubectl
        .apply(&(pool("10.200.0.0/30") + "---\n" + &service("web", "")))?;
    let (mut controller, port) = lab.controller("controller-a")?;

    // The Service gets the pool's first address, with its annotation, Event, pool status,
    // ConfigurationState and metrics.
    let took = lab.wait_ingress("web", &["10.200.0.0"])?;
    println!("FIGURE controller_first_ip_ms {}", took.as_millis());
    let web = lab.kubectl.get(&["service", "-n", "shop", "web"])?;
    assert_eq!(
        web["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"],
        "prod"
    );
    wait_for("IPAllocated event", WAIT, || {
        Ok(has(&lab.events("web")?, "IPAllocated", "10.200.0.0").then_some(()))
    })?;
    wait_for("pool status", WAIT, || {
        let pool = lab
            .kubectl
            .get(&["ipaddresspool", "-n", "metallb-system", "prod"])?;
        Ok(
            (pool["status"]["assignedIPv4"] == 1 && pool["status"]["availableIPv4"] == 3)
                .then_some(()),
        )
    })?;
    assert_eq!(lab.state()?["result"], "Valid");
    let text = metrics(port)?;
    assert!(
        text.contains("metallb_allocator_addresses_in_use_total{pool=\"prod\"} 1.0"),
        "{text}"
    );

    // A requested IP, then the rest of the pool, then one Service too many.
    lab.kubectl
        .apply(&service("pinned", "metallb.io/loadBalancerIPs: 10.200.0.2"))?;
    lab.wait_ingress("pinned", &["10.200.0.2"])?;
    lab.kubectl
        .apply(&(service("second", "") + &service("third", "")))?;
    lab.wait_ingress("second", &["10.200.0.1"])?;
    lab.wait_ingress("third", &["10.200.0.3"])?;
    lab.kubectl.apply(&service("fourth", ""))?;
    wait_for("AllocationFailed on fourth", WAIT, || {
        Ok(has(
            &lab.events("fourth")?,
            "AllocationFailed",
            "pool prod exhausted (4/4",
        )
        .then_some(()))
    })?;
    assert!(lab.ingress("fourth")?.is_empty());

    // A bad pool: reported, and no IP changes.
    lab.kubectl.apply(&pool("10.200.0.0/30, not-an-address"))?;
    wait_for("Invalid ConfigurationState", WAIT, || {
        let state = lab.state()?;
        Ok((state["result"] == "Invalid"
            && state["errorSummary"]
                .as_str()
                .unwrap_or_default()
                .contains("IPAddressPool/metallb-system/prod: spec.addresses[1]"))
        .then_some(()))
    })?;
    wait_for("stale metric", WAIT, || {
        Ok(metrics(port)?
            .contains("metallb_k8s_client_config_stale_bool 1")
            .then_some(()))
    })?;
    assert_eq!(lab.ingress("web")?, ["10.200.0.0"]);

    // A restart (the new replica rebuilds from the statuses) changes no IP.
    controller.stop(Duration::from_secs(10))?;
    let (_controller, port) = lab.controller("controller-b")?;
    wait_for("the new controller to pass", WAIT, || {
        Ok(metrics(port)?
            .contains("metallb_k8s_client_config_stale_bool 1")
            .then_some(()))
    })?;
    for (name, ip) in [
        ("web", "10.200.0.0"),
        ("second", "10.200.0.1"),
        ("pinned", "10.200.0.2"),
        ("third", "10.200.0.3"),
    ] {
        assert_eq!(lab.ingress(name)?, [ip], "{name} after restart");
    }
    assert!(lab.ingress("fourth")?.is_empty());

    // The pool's range moves: the documented outcome is that every Service is reallocated
    // from the new range, and the one that asked for an address outside it waits, saying why.
    lab.kubectl.apply(&pool("10.200.1.0/30"))?;
    wait_for("Valid again", WAIT, || {
        Ok((lab.state()?["result"] == "Valid").then_some(()))
    })?;
    let moved = wait_for("every Service but pinned in the new range", WAIT, || {
        let mut held = Vec::new();
        for name in ["second", "third", "web", "fourth"] {
            match lab.ingress(name)?.as_slice() {
                [ip] if ip.starts_with("10.200.1.") => held.push(ip.clone()),
                _ => return Ok(None),
            }
        }
        Ok(Some(held))
    })?;
    let mut distinct = moved.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{moved:?}");
    lab.wait_ingress("pinned", &[])?;
    wait_for("pinned says why", WAIT, || {
        Ok(has(&lab.events("pinned")?, "AllocationFailed", "10.200.0.2").then_some(()))
    })?;
    assert!(has(&lab.events("web")?, "ClearAssignment", "10.200.0.0"));

    // Deleting a Service frees its IP for a pending one.
    lab.kubectl.apply(&service("fifth", ""))?;
    wait_for("fifth pending", WAIT, || {
        Ok(has(&lab.events("fifth")?, "AllocationFailed", "exhausted").then_some(()))
    })?;
    lab.kubectl
        .run(&["delete", "service", "-n", "shop", "web"], None)?;
    lab.wait_ingress("fifth", &[moved[2].as_str()])?;
    Ok(())
}

#[test]
fn a_standby_takes_over_when_the_leader_stops_or_dies() -> Result<()> {
    let lab = Lab::start("lease")?;
    lab.kubectl.apply(&pool("10.200.2.0/29"))?;
    let (a, _) = lab.controller("replica-a")?;
    let (b, _) = lab.controller("replica-b")?;
    let mut replicas = vec![("replica-a", a), ("replica-b", b)];
    let holder = wait_for("a Lease holder", WAIT, || lab.lease_holder())?;
    lab.kubectl.apply(&service("one", ""))?;
    lab.wait_ingress("one", &["10.200.2.0"])?;

    // Clean stop: SIGTERM releases the Lease, the standby takes over.
    let index = replicas
        .iter()
        .position(|(n, _)| *n == holder)
        .context("holder is one of ours")?;
    let (_, mut leader) = replicas.remove(index);
    let stopped = Instant::now();
    leader.stop(Duration::from_secs(10))?;
    lab.kubectl.apply(&service("two", ""))?;
    lab.wait_ingress("two", &["10.200.2.1"])?;
    let clean = stopped.elapsed();
    println!(
        "FIGURE controller_takeover_after_sigterm_ms {}",
        clean.as_millis()
    );
    let (standby_name, mut standby) = replicas.remove(0);
    // The holder field can read empty for a moment while the standby's fresh Lease manager
    // takes over under load; it must settle on the standby.
    wait_for("the standby to hold the Lease", WAIT, || {
        Ok((lab.lease_holder()?.as_deref() == Some(standby_name)).then_some(()))
    })?;
    // The standby sees the release on its watch of the Lease and contends at once, without
    // waiting for the old term (5 s) to expire.
    if clean > Duration::from_secs(3) {
        bail!("takeover after a clean stop took {clean:?}");
    }

    // A crash: a fresh replica stands by, the leader is killed, the Lease expires.
    let (_fresh, _) = lab.controller("replica-c")?;
    std::thread::sleep(Duration::from_secs(1));
    let killed = Instant::now();
    standby.kill()?;
    lab.kubectl.apply(&service("three", ""))?;
    lab.wait_ingress("three", &["10.200.2.2"])?;
    let crash = killed.elapsed();
    println!(
        "FIGURE controller_takeover_after_kill_ms {}",
        crash.as_millis()
    );
    assert_eq!(lab.lease_holder()?.as_deref(), Some("replica-c"));
    if crash > Duration::from_secs(12) {
        bail!("takeover after a crash took {crash:?}");
    }
    // No IP moved through either handover.
    assert_eq!(lab.ingress("one")?, ["10.200.2.0"]);
    assert_eq!(lab.ingress("two")?, ["10.200.2.1"]);
    Ok(())
}

/// `GET /metrics` over HTTPS on `port` (the certificate not verified, as scrapers of a
/// self-signed one do), with `token` as the bearer token: the status code and the body.
fn secure_metrics(port: u16, token: Option<&str>) -> Result<(u16, String)> {
    let mut curl = Command::new("curl");
    curl.args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"]);
    if let Some(token) = token {
        curl.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = curl
        .arg(format!("https://127.0.0.1:{port}/metrics"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// `--metrics-secure`: `/metrics` over HTTPS on the metrics address only, answered for a
/// ServiceAccount token the API server accepts (TokenReview) whose user may get the
/// non-resource URL `/metrics` (SubjectAccessReview); refused without a token (401), with a
/// token the API server does not know (401) and for a user without the permission (403).
/// The probes stay plain and open.
#[test]
fn secure_metrics_answer_only_callers_the_api_server_allows() -> Result<()> {
    let lab = Lab::start("secure-metrics")?;
    lab.kubectl.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: scraper, namespace: metallb-system}\n\
         ---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: stranger, namespace: metallb-system}\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: metrics-reader}\n\
         rules: [{nonResourceURLs: [/metrics], verbs: [get]}]\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: scraper}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics-reader}\n\
         subjects: [{kind: ServiceAccount, name: scraper, namespace: metallb-system}]\n",
    )?;
    let token = |account: &str| -> Result<String> {
        Ok(lab
            .kubectl
            .run(&["create", "token", account, "-n", "metallb-system"], None)?
            .trim()
            .to_string())
    };
    let (scraper, stranger) = (token("scraper")?, token("stranger")?);
    let metrics_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let (_controller, health) = lab.controller_with(
        "secure",
        &["--metrics-addr", &metrics_addr, "--metrics-secure"],
    )?;
    let (code, body) = wait_for("the secure metrics endpoint", WAIT, || {
        let answer = secure_metrics(metrics_port, Some(&scraper))?;
        Ok((answer.0 != 0).then_some(answer))
    })?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("metallb_k8s_client_updates_total"), "{body}");
    let (code, body) = secure_metrics(metrics_port, None)?;
    assert_eq!(code, 401, "{body}");
    let (code, body) = secure_metrics(metrics_port, Some("not-a-token"))?;
    assert_eq!(code, 401, "{body}");
    let (code, body) = secure_metrics(metrics_port, Some(&stranger))?;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("/metrics"), "{body}");
    // The health address answers the probes in plain HTTP, and no longer /metrics.
    let plain = metrics(health)?;
    assert!(plain.starts_with("HTTP/1.1 404"), "{plain}");
    Ok(())
}
