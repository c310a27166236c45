//! Announcing an `externalTrafficPolicy: Local` Service from this node only once kube-proxy
//! forwards it here.
//!
//! A node's first ready endpoint for a Local Service (a pod started, a node uncordoned) shows
//! in the EndpointSlice before kube-proxy on the node has its rules for it: kube-proxy syncs
//! at most once a second. Announced at once, the node draws traffic that its kube-proxy still
//! drops. kube-proxy says when it is ready on the Service's health check node port
//! (`spec.healthCheckNodePort`, the port cloud load balancers probe): 200 once its rules hold
//! a local endpoint, 503 before. So the node's announcement of such a Service is held
//! ([`NotAnnounced::ProxyNotReady`](crate::bgp::NotAnnounced::ProxyNotReady)) until the port
//! answers 200 on the node's address, for at most [`PROBE_DEADLINE`]; nothing listening there
//! (no kube-proxy, or a proxy that does not serve the port) releases it at once.
//!
//! Endpoints that are already ready when the speaker starts are taken as programmed (a
//! restarted speaker must send its routes again before a graceful restart ends). Only this
//! node's own BGP announcements wait: layer-2 elections are computed alike on every node from
//! the API's objects and cannot depend on one node's kube-proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::views::{LbService, ServiceKey};

/// How long an announcement waits for kube-proxy at most.
pub(crate) const PROBE_DEADLINE: Duration = Duration::from_secs(5);
/// How often the health check node port is asked while it answers 503.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(100);

/// A probe the speaker is asked to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProbeRequest {
    /// The Service.
    pub key: ServiceKey,
    /// Its health check node port.
    pub port: u16,
    /// Which wait this is (a Service that leaves and comes back waits anew).
    pub id: u64,
}

#[derive(Debug)]
struct Entry {
    port: u16,
    id: u64,
    released: bool,
}

/// Which Local Services with ready endpoints on this node wait for kube-proxy: the
/// planner's record, kept between passes. Disabled (the default), nothing waits.
#[derive(Debug, Default)]
pub(crate) struct ProxyGate {
    enabled: bool,
    /// Whether a pass has run: what the first pass finds is taken as programmed.
    started: bool,
    entries: BTreeMap<ServiceKey, Entry>,
    next_id: u64,
    requests: Vec<ProbeRequest>,
    released: BTreeSet<ServiceKey>,
}

impl ProxyGate {
    /// A gate that holds announcements until kube-proxy forwards them.
    pub(crate) fn enabled() -> ProxyGate {
        ProxyGate {
            enabled: true,
            ..ProxyGate::default()
        }
    }

    /// Records `service` as decided again, with `local_ready` saying whether it has a ready
    /// endpoint on this node.
    pub(crate) fn observe(&mut self, service: &LbService, local_ready: bool) {
        if !self.enabled {
            return;
        }
        let port = service
            .health_check_node_port
            .filter(|_| service.traffic_policy_local && local_ready);
        let Some(port) = port else {
            self.entries.remove(&service.key);
            return;
        };
        if self
            .entries
            .get(&service.key)
            .is_some_and(|e| e.port == port)
        {
            return;
        }
        self.next_id += 1;
        let released = !self.started;
        self.entries.insert(
            service.key.clone(),
            Entry {
                port,
                id: self.next_id,
                released,
            },
        );
        if !released {
            self.requests.push(ProbeRequest {
                key: service.key.clone(),
                port,
                id: self.next_id,
            });
        }
    }

    /// Forgets a Service that is gone.
    pub(crate) fn forget(&mut self, key: &ServiceKey) {
        self.entries.remove(key);
    }

    /// Forgets every Service `keep` refuses.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&ServiceKey) -> bool) {
        self.entries.retain(|key, _| keep(key));
    }

    /// Ends the pass: from now on, new local endpoints wait.
    pub(crate) fn pass_done(&mut self) {
        self.started = true;
    }

    /// The Services whose announcement from this node waits.
    pub(crate) fn held(&self) -> BTreeSet<ServiceKey> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.released)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Releases the wait `id` of `key` (a probe ended); false when that wait is over
    /// already (the Service left and maybe came back since).
    pub(crate) fn release(&mut self, key: &ServiceKey, id: u64) -> bool {
        match self.entries.get_mut(key) {
            Some(entry) if entry.id == id && !entry.released => {
                entry.released = true;
                self.released.insert(key.clone());
                true
            }
            _ => false,
        }
    }

    /// The Services released since the last call (to decide again).
    pub(crate) fn take_released(&mut self) -> BTreeSet<ServiceKey> {
        std::mem::take(&mut self.released)
    }

    /// The probes to start.
    pub(crate) fn take_requests(&mut self) -> Vec<ProbeRequest> {
        std::mem::take(&mut self.requests)
    }
}

/// How a probe ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProbeOutcome {
    /// kube-proxy answered 200: it forwards to a local endpoint.
    Forwarding,
    /// Nothing listens on the port: no kube-proxy health check to wait for.
    NoProxy,
    /// [`PROBE_DEADLINE`] passed without a 200.
    TimedOut,
}

/// The status code of `GET /` on `address`, or `None` when nothing answers.
async fn status_of(address: SocketAddr) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 256 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP status line"))
}

/// Asks kube-proxy's health check on `ip:port` until it answers 200, nothing listens, or
/// [`PROBE_DEADLINE`] passes.
pub(crate) async fn probe(ip: IpAddr, port: u16) -> (ProbeOutcome, Duration) {
    let address = SocketAddr::new(ip, port);
    let started = Instant::now();
    loop {
        let attempt = tokio::time::timeout(PROBE_EVERY * 5, status_of(address)).await;
        match attempt {
            Ok(Ok(200)) => return (ProbeOutcome::Forwarding, started.elapsed()),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                return (ProbeOutcome::NoProxy, started.elapsed());
            }
            _ => {}
        }
        if started.elapsed() >= PROBE_DEADLINE {
            return (ProbeOutcome::TimedOut, started.elapsed());
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(name: &str, port: Option<u16>) -> LbService {
        LbService {
            key: ServiceKey::new("default", name),
            labels: BTreeMap::new(),
            is_load_balancer: true,
            load_balancer_class: None,
            traffic_policy_local: true,
            ingress: Vec::new(),
            sharing_key: None,
            health_check_node_port: port,
        }
    }

    #[test]
    fn what_the_first_pass_finds_is_taken_as_programmed_and_later_arrivals_wait() {
        let mut gate = ProxyGate::enabled();
        gate.observe(&local("old", Some(30001)), true);
        gate.pass_done();
        assert!(gate.held().is_empty());
        assert!(gate.take_requests().is_empty());

        gate.observe(&local("new", Some(30002)), true);
        let key = ServiceKey::new("default", "new");
        assert_eq!(gate.held(), BTreeSet::from([key.clone()]));
        let requests = gate.take_requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].port, 30002);
        // Deciding it again while it waits asks for no second probe.
        gate.observe(&local("new", Some(30002)), true);
        assert!(gate.take_requests().is_empty());

        assert!(gate.release(&key, requests[0].id));
        assert!(gate.held().is_empty());
        assert_eq!(gate.take_released(), BTreeSet::from([key.clone()]));
        // A probe's result arriving twice releases once.
        assert!(!gate.release(&key, requests[0].id));
    }

    #[test]
    fn a_service_that_leaves_the_node_and_comes_back_waits_anew() {
        let mut gate = ProxyGate::enabled();
        gate.pass_done();
        let key = ServiceKey::new("default", "web");
        gate.observe(&local("web", Some(30001)), true);
        let first = gate.take_requests().remove(0);
        gate.observe(&local("web", Some(30001)), false);
        assert!(gate.held().is_empty());
        gate.observe(&local("web", Some(30001)), true);
        let second = gate.take_requests().remove(0);
        assert_ne!(first.id, second.id);
        // The old probe's answer does not release the new wait.
        assert!(!gate.release(&key, first.id));
        assert_eq!(gate.held(), BTreeSet::from([key.clone()]));
        assert!(gate.release(&key, second.id));
    }

    #[test]
    fn cluster_services_services_without_a_port_and_a_disabled_gate_never_wait() {
        let mut gate = ProxyGate::enabled();
        gate.pass_done();
        let mut cluster = local("cluster", Some(30001));
        cluster.traffic_policy_local = false;
        gate.observe(&cluster, true);
        gate.observe(&local("no-port", None), true);
        assert!(gate.held().is_empty());
        let mut off = ProxyGate::default();
        off.pass_done();
        off.observe(&local("web", Some(30001)), true);
        assert!(off.held().is_empty() && off.take_requests().is_empty());
    }

    #[tokio::test]
    async fn a_probe_waits_for_200_and_gives_up_at_once_when_nothing_listens() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Two 503s, then 200.
        let server = tokio::spawn(async move {
            for code in [
                "503 Service Unavailable",
                "503 Service Unavailable",
                "200 OK",
            ] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 128];
                let _ = socket.read(&mut buf).await;
                let reply = format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n");
                socket.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let (outcome, took) = probe("127.0.0.1".parse().unwrap(), port).await;
        assert_eq!(outcome, ProbeOutcome::Forwarding);
        assert!(took >= PROBE_EVERY * 2, "{took:?}");
        server.await.unwrap();

        // The listener is gone: nothing listens on the port any more.
        let (outcome, _) = probe("127.0.0.1".parse().unwrap(), port).await;
        assert_eq!(outcome, ProbeOutcome::NoProxy);
    }
}
