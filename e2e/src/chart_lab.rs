//! The chart as shipped on real nodes, with a client and an FRR ToR beside them: what the
//! chart scenarios (`tests/chart_on_nodes.rs`) and the traffic benchmarks share. The nodes'
//! network is 10.95.0.0/24 (ToR `.1`, control plane `.2`, nodes `.11` and `.12`, client
//! `.100`); the client reaches 10.94.0.0/24 (a BGP pool) through the ToR.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::frr::{Build, Frr};
use crate::helm::helm;
use crate::image;
use crate::kubectl::Kubectl;
use crate::kubenode::Cluster;
use crate::netns::Netns;
use crate::paths;
use crate::process::wait_for;

/// The namespace the chart installs into.
pub const NS: &str = "metallb-system";

/// The ToR: eBGP to both nodes with BFD (100 ms × 3), ECMP into the kernel.
pub const ROUTER: &str = include_str!("../routers/chart-tor.conf");

/// The cluster with the chart installed and every ferrolb pod Ready. Drops in order: the
/// ToR, the client's and ToR's namespaces, the cluster.
#[derive(Debug)]
pub struct ChartLab {
    /// The ToR's FRR.
    pub tor: Frr,
    /// The ToR's namespace.
    pub rtr: Netns,
    /// The client's namespace.
    pub client: Netns,
    /// The cluster.
    pub cluster: Cluster,
    home: PathBuf,
}

impl ChartLab {
    /// Builds the images (the demo backend, and ferrolb from the image definition and the
    /// `ferrolb` binary), starts the cluster with them, the client and the ToR, and installs
    /// the chart with its default values. Namespaces are named `<prefix>-…`; files go to
    /// `dir`.
    pub fn start(prefix: &str, dir: &Path) -> Result<ChartLab> {
        let lab = ChartLab::without_chart(prefix, dir, &chart_images(dir)?)?;
        install_chart(lab.cluster.kubectl(), |args| lab.helm(args), 4)?;
        Ok(lab)
    }

    /// The cluster with `images` imported into every node, the client and the ToR, and no
    /// load balancer installed.
    pub fn without_chart(prefix: &str, dir: &Path, images: &[PathBuf]) -> Result<ChartLab> {
        let images: Vec<&Path> = images.iter().map(PathBuf::as_path).collect();
        let cluster = Cluster::start(prefix, "10.95.0", dir, &images)?;
        let client = Netns::create(&format!("{prefix}-cli"))?;
        cluster
            .switch()
            .attach(&client, "cli", &["10.95.0.100/24"])?;
        let rtr = Netns::create(&format!("{prefix}-rtr"))?;
        cluster.switch().attach(&rtr, "rtr", &["10.95.0.1/24"])?;
        rtr.sysctl(&[
            "net.ipv4.ip_forward=1",
            "net.ipv4.fib_multipath_hash_policy=1",
        ])?;
        let tor = Frr::start(&rtr, &dir.join("rtr"), &Build::Host)?;
        tor.load(ROUTER)?;
        // Through the ToR's ECMP, not to one node straight as an ICMP redirect would say.
        rtr.no_redirects()?;
        client.no_redirects()?;
        client.ip(&["route", "add", "10.94.0.0/24", "via", "10.95.0.1"])?;
        Ok(ChartLab {
            tor,
            rtr,
            client,
            cluster,
            home: dir.join("helm"),
        })
    }

    /// `helm upgrade` of the release with the log level set to `level`, which restarts
    /// every speaker pod, one node at a time; returns once the rollout is done.
    pub fn upgrade_speakers(&self, level: &str) -> Result<()> {
        let chart = paths::repo().join("deploy/charts/ferrolb");
        self.helm(&[
            "upgrade",
            "ferrolb",
            &chart.to_string_lossy(),
            "-n",
            NS,
            "--set",
            &format!("logLevel={level}"),
        ])?;
        self.cluster.kubectl().run(
            &[
                "rollout",
                "status",
                "ds/speaker",
                "-n",
                NS,
                "--timeout=180s",
            ],
            None,
        )?;
        Ok(())
    }

    /// Waits until the ToR routes `bgp_ip` to both nodes with BFD up on both sessions, and
    /// the client's requests to `bgp_ip` and to each of `ips` are answered.
    pub fn wait_settled(&self, what: &str, bgp_ip: &str, ips: &[&str]) -> Result<()> {
        let nodes = self.cluster.addresses().len();
        wait_for(what, Duration::from_secs(90), || {
            let bfd = self.tor.json("show bfd peers json")?;
            let bfd_up = bfd
                .as_array()
                .is_some_and(|p| p.len() == nodes && p.iter().all(|p| p["status"] == "up"));
            Ok((bfd_up && self.announced(bgp_ip, ips)?).then_some(()))
        })
        .map_err(|e| match self.unsettled(bgp_ip, ips) {
            Ok(missing) => e.context(format!(
                "still missing: {missing}\n{}",
                self.speakers_state()
            )),
            Err(_) => e,
        })
    }

    /// For a failure's message: each speaker pod's BFD peers and BGP sessions as its FRR
    /// sees them, and the speakers' last log lines.
    fn speakers_state(&self) -> String {
        let kubectl = self.cluster.kubectl();
        let mut out = String::new();
        let pods = kubectl
            .run(
                &[
                    "get",
                    "pods",
                    "-n",
                    NS,
                    "-l",
                    "component=speaker",
                    "-o",
                    "name",
                ],
                None,
            )
            .unwrap_or_default();
        for pod in pods.lines() {
            let frr = kubectl.run(
                &[
                    "exec",
                    "-n",
                    NS,
                    pod,
                    "-c",
                    "frr",
                    "--",
                    "vtysh",
                    "-c",
                    "show bfd peers brief",
                    "-c",
                    "show bgp summary",
                ],
                None,
            );
            out += &format!("{pod}'s FRR:\n{}\n", frr.unwrap_or_else(|e| e.to_string()));
        }
        let logs = kubectl.run(&speaker_logs_args(&["--tail=60", "--prefix"]), None);
        out += &format!(
            "speakers' logs:\n{}",
            logs.unwrap_or_else(|e| e.to_string())
        );
        out
    }

    /// What keeps the lab from being settled: the ToR's BFD sessions that are not up, the
    /// nodes it does not route `bgp_ip` to, the IPs the client gets no answer from, and the
    /// FRR daemons not running on each node.
    fn unsettled(&self, bgp_ip: &str, ips: &[&str]) -> Result<String> {
        let bfd = self.tor.json("show bfd peers json")?;
        let mut missing = Vec::new();
        for peer in bfd.as_array().into_iter().flatten() {
            if peer["status"] != "up" {
                missing.push(format!("BFD with {} {}", peer["peer"], peer["status"]));
            }
        }
        let hops = crate::lab::nexthops(&self.rtr, bgp_ip)?;
        for node in self.cluster.addresses() {
            if !hops.contains(node) {
                missing.push(format!("no route to {bgp_ip} through {node}"));
            }
        }
        for ip in std::iter::once(&bgp_ip).chain(ips) {
            if !self.answered(ip) {
                missing.push(format!("no answer from {ip}"));
            }
        }
        for node in 0..self.cluster.addresses().len() {
            let mut down = Vec::new();
            for daemon in FRR_DAEMONS {
                if !self.runs_on_node(node, daemon)? {
                    down.push(daemon);
                }
            }
            if !down.is_empty() {
                missing.push(format!(
                    "not running on node {}: {}",
                    node + 1,
                    down.join(", ")
                ));
            }
        }
        Ok(missing.join("; "))
    }

    /// Whether a demo pod answers the client's request to `http://<ip>/`.
    pub fn answered(&self, ip: &str) -> bool {
        self.client
            .run("curl", &["-s", "-m", "1", &format!("http://{ip}/")])
            .is_ok_and(|a| a.starts_with("pod="))
    }

    /// Whether the ToR routes `bgp_ip` to every node and the client's requests to it and to
    /// each of `ips` are answered.
    pub fn announced(&self, bgp_ip: &str, ips: &[&str]) -> Result<bool> {
        let mut all = self.cluster.addresses().to_vec();
        all.sort();
        let mut hops = crate::lab::nexthops(&self.rtr, bgp_ip)?;
        hops.sort();
        Ok(hops == all && self.answered(bgp_ip) && ips.iter().all(|ip| self.answered(ip)))
    }

    /// The index of the node whose MAC the client holds for `ip`.
    pub fn l2_owner(&self, ip: &str) -> Result<usize> {
        let neighbour = self.client.run("ip", &["neigh", "show", ip])?;
        for (i, ns) in self.cluster.node_namespaces().iter().enumerate() {
            let mac = ns.run("cat", &["/sys/class/net/eth0/address"])?;
            if neighbour.contains(mac.trim()) {
                return Ok(i);
            }
        }
        bail!("the client's neighbour entry for {ip} names no node: {neighbour}")
    }

    /// Takes node `node`'s switch port down under a request loop (one request every 20 ms)
    /// to `ip`, brings it back once requests have been answered for 2 s after a failure (or
    /// 6 s after it went down, if none failed; at most `limit`), and returns the window of
    /// failed requests ([`failure_window`]) among the requests of [`around_fault`].
    pub fn port_failure_window(&self, ip: &str, node: usize, limit: Duration) -> Result<Duration> {
        let port = format!("n{}", node + 1);
        let requests = RequestLoop::start(&self.client, ip, Duration::from_millis(20))?;
        std::thread::sleep(Duration::from_secs(1));
        self.cluster.switch().set_port(&port, false)?;
        let down = std::time::Instant::now();
        while down.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(200));
            let results = around_fault(&requests.requests(), down);
            let recovered = match results.iter().rposition(|(_, ok)| !ok) {
                Some(last) => results[last..]
                    .iter()
                    .find(|(_, ok)| *ok)
                    .is_some_and(|(at, _)| at.elapsed() >= Duration::from_secs(2)),
                None => down.elapsed() >= Duration::from_secs(6),
            };
            if recovered {
                break;
            }
        }
        let after = around_fault(&requests.finish_requests(), down);
        // Whose MAC the client held at the end, read before the port comes back.
        let neighbour = self.client.run("ip", &["neigh", "show", ip]);
        self.cluster.switch().set_port(&port, true)?;
        failure_window(&after).with_context(|| {
            format!(
                "requests to {ip} never succeeded again within {limit:?} after port {port} \
                 went down; the client's neighbour entry then: {}\n{}",
                neighbour.unwrap_or_else(|e| e.to_string()),
                self.speakers_state()
            )
        })
    }

    /// Sends SIGKILL to every process named `comm` on node `node` (0 or 1: the speaker's
    /// pod and FRR share the node's network namespace) and waits until they have died;
    /// returns their PIDs, none when none runs (it is being restarted).
    pub fn kill_on_node(&self, node: usize, comm: &str) -> Result<Vec<i32>> {
        let pids: Vec<i32> = pids_in(&self.cluster.node_namespaces()[node], comm)?
            .into_iter()
            .filter(|pid| alive(*pid))
            .collect();
        for pid in &pids {
            // Gone already is as good as killed.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // A process SIGKILL was sent to runs on until the kernel has torn it down: seen
        // alive then, it would pass for its own restart.
        wait_for(
            &format!("{comm} {pids:?} on node {} dead", node + 1),
            Duration::from_secs(10),
            || Ok((!pids.iter().any(|pid| alive(*pid))).then_some(())),
        )?;
        Ok(pids)
    }

    /// Whether a live (not zombie) process named `comm` runs on node `node`.
    pub fn runs_on_node(&self, node: usize, comm: &str) -> Result<bool> {
        self.restarted_on_node(node, comm, &[])
    }

    /// Whether a live process named `comm` runs on node `node` other than `killed` (the
    /// PIDs [`ChartLab::kill_on_node`] returned): the one started in their place.
    pub fn restarted_on_node(&self, node: usize, comm: &str, killed: &[i32]) -> Result<bool> {
        let pids = pids_in(&self.cluster.node_namespaces()[node], comm)?;
        Ok(pids
            .into_iter()
            .any(|pid| !killed.contains(&pid) && alive(pid)))
    }

    /// `helm ARGS` against the cluster.
    pub fn helm(&self, args: &[&str]) -> Result<String> {
        helm(
            self.cluster.kubeconfig(),
            &self.home,
            Some(self.cluster.control_plane()),
            args,
        )
    }
}

/// The FRR processes a speaker pod's `frr` container runs.
const FRR_DAEMONS: [&str; 6] = ["watchfrr", "zebra", "mgmtd", "bgpd", "staticd", "bfdd"];

/// The OCI archives, written to `dir`, that nodes running the chart import: the demo
/// backend and ferrolb's image (from the image's root file system, `hack/rootfs.sh image`,
/// and the `ferrolb` binary).
pub fn chart_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let root = paths::image_root()?;
    let demo = dir.join("demo.tar");
    image::demo(&root).write(&demo)?;
    let ferrolb = dir.join("ferrolb.tar");
    image::ferrolb(&root, &paths::ferrolb()?)?.write(&ferrolb)?;
    Ok(vec![demo, ferrolb])
}

/// `helm install ferrolb deploy/charts/ferrolb -n metallb-system --create-namespace` with
/// the default values, run by `helm`; returns once `pods` ferrolb pods are there, all Ready
/// (with the chart's defaults: a speaker per node and two controller replicas).
pub fn install_chart(
    kubectl: &Kubectl,
    helm: impl Fn(&[&str]) -> Result<String>,
    pods: usize,
) -> Result<()> {
    helm_install(helm)?;
    all_ready(kubectl, "ferrolb", pods, Duration::from_secs(120))
}

/// `helm install ferrolb deploy/charts/ferrolb -n metallb-system --create-namespace` with
/// the default values, run by `helm`, without waiting for the pods.
pub fn helm_install(helm: impl Fn(&[&str]) -> Result<String>) -> Result<String> {
    helm_install_with(helm, &[])
}

/// [`helm_install`] with `flags` added to the command.
pub fn helm_install_with(
    helm: impl Fn(&[&str]) -> Result<String>,
    flags: &[&str],
) -> Result<String> {
    let chart = paths::repo().join("deploy/charts/ferrolb");
    let chart = chart.to_string_lossy();
    let mut args = vec!["install", "ferrolb", &chart, "-n", NS, "--create-namespace"];
    args.extend(flags);
    helm(&args)
}

/// Waits until `metallb-system` holds `pods` pods, all Ready; on a time-out the error carries
/// the pods and the namespace's events. `what` names them in the message.
pub fn all_ready(kubectl: &Kubectl, what: &str, pods: usize, timeout: Duration) -> Result<()> {
    let all_ready = wait_for(&format!("every {what} pod Ready"), timeout, || {
        let (ready, total) = ready_pods(kubectl, NS)?;
        Ok((total == pods && ready == total).then_some(()))
    });
    if let Err(error) = all_ready {
        bail!(
            "{error:#}\n{}\n{}",
            kubectl.run(&["get", "pods", "-n", NS, "-o", "wide"], None)?,
            kubectl.run(&["get", "events", "-n", NS], None)?
        );
    }
    Ok(())
}

/// The containers of the pods in `pods` (a `kubectl get pods -o json` list) that the kubelet
/// holds back from restarting (`CrashLoopBackOff`), each as `pod/container: N restarts, last
/// ended <reason> (exit <code>)`.
pub fn crash_looping(pods: &serde_json::Value) -> Vec<String> {
    containers_where(pods, |status| {
        status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })
}

/// The containers of `pods` (a `kubectl get pods -o json` list) that have restarted, each as
/// [`crash_looping`] names them.
pub fn restarted(pods: &serde_json::Value) -> Vec<String> {
    containers_where(pods, |status| {
        status["restartCount"].as_u64().is_some_and(|n| n > 0)
    })
}

/// The containers of `pods` whose status `pick` accepts: pod/container, restarts, and how
/// the last run ended.
fn containers_where(
    pods: &serde_json::Value,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> Vec<String> {
    let mut found = Vec::new();
    for pod in pods["items"].as_array().into_iter().flatten() {
        let name = pod["metadata"]["name"].as_str().unwrap_or("?");
        let statuses = ["initContainerStatuses", "containerStatuses"]
            .iter()
            .filter_map(|key| pod["status"][key].as_array())
            .flatten();
        for status in statuses.filter(|s| pick(s)) {
            let last = &status["lastState"]["terminated"];
            found.push(format!(
                "{name}/{}: {} restarts, last ended {} (exit {})",
                status["name"].as_str().unwrap_or("?"),
                status["restartCount"].as_u64().unwrap_or(0),
                last["reason"].as_str().unwrap_or("?"),
                last["exitCode"]
                    .as_i64()
                    .map_or("?".into(), |c| c.to_string()),
            ));
        }
    }
    found
}

/// The IP Service `default/<name>` got, once it has one.
pub fn service_ip(cluster: &Cluster, name: &str) -> Result<String> {
    wait_for(
        &format!("the IP of Service {name}"),
        Duration::from_secs(60),
        || {
            let service = cluster.kubectl().get(&["service", name, "-n", "default"])?;
            Ok(service["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .map(str::to_string))
        },
    )
}

/// `vtysh -c COMMAND` in a speaker's frr container, as the README tells a user.
pub fn speaker_vtysh(kubectl: &Kubectl, command: &str) -> Result<String> {
    kubectl.run(
        &[
            "exec",
            "-n",
            NS,
            "ds/speaker",
            "-c",
            "frr",
            "--",
            "vtysh",
            "-c",
            command,
        ],
        None,
    )
}

/// `kubectl logs` arguments for the speaker containers (MetalLB's `component=speaker`
/// label), followed by `extra`.
pub fn speaker_logs_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["logs", "-n", NS, "-l", "component=speaker", "-c", "speaker"];
    args.extend_from_slice(extra);
    args
}

/// How many pods in `namespace` are Ready, and how many there are.
pub fn ready_pods(kubectl: &Kubectl, namespace: &str) -> Result<(usize, usize)> {
    let pods = kubectl.get(&["pods", "-n", namespace])?;
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    let ready = items.iter().filter(|p| pod_ready(p)).count();
    Ok((ready, items.len()))
}

/// Whether `pod` (as the API server gives it) has its Ready condition true.
pub fn pod_ready(pod: &serde_json::Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// A layer-2 pool and its advertisement, and Service `web` of two demo pods.
pub fn l2_manifests() -> String {
    format!(
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: l2, namespace: {NS}}}
spec:
  addresses: [10.95.0.200-10.95.0.209]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: l2, namespace: {NS}}}
spec:
  ipAddressPools: [l2]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
{web}",
        web = image::demo_workload("web", Some(2)).replacen("apiVersion", "---\napiVersion", 1)
    )
}

/// BGP to the ToR with a BFD profile and a community, and a Service announced by it.
pub fn bgp_manifests() -> String {
    format!(
        "apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {{name: fast, namespace: {NS}}}
spec: {{receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}}
---
{}",
        bgp_manifests_with_peer(
            "{myASN: 64512, peerASN: 64513, peerAddress: 10.95.0.1, bfdProfile: fast, enableGracefulRestart: true}"
        )
    )
}

/// BGPPeer `tor` with spec `peer` (YAML flow style), the BGP pool (10.94.0.0/28) with its
/// advertisement (community 64512:100), and Service `routed` over the `web` pods, in that pool
/// by its annotation.
pub fn bgp_manifests_with_peer(peer: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: tor, namespace: {NS}}}
spec: {peer}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: bgp, namespace: {NS}}}
spec:
  addresses: [10.94.0.0/28]
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: bgp, namespace: {NS}}}
spec:
  ipAddressPools: [bgp]
  communities: [\"64512:100\"]
---
apiVersion: v1
kind: Service
metadata: {{name: routed, namespace: default, annotations: {{metallb.io/address-pool: bgp}}}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"
    )
}

/// Service `spread` (`externalTrafficPolicy: Local`, in the BGP pool of [`bgp_manifests`])
/// over a Deployment of one demo pod per node: the pods keep off each other's node, so a pod
/// a drain evicts stays Pending until its node is uncordoned, and they stop 5 s after being
/// told to (the demo server ignores SIGTERM, like a server that finishes what it has).
pub fn spread_manifests() -> String {
    let workload = image::demo_workload("spread", Some(2)).replace(
        "    spec:\n      containers:",
        "    spec:
      terminationGracePeriodSeconds: 5
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: spread}}
            topologyKey: kubernetes.io/hostname
      containers:",
    );
    format!(
        "{workload}---
apiVersion: v1
kind: Service
metadata:
  name: spread
  namespace: default
  annotations: {{metallb.io/address-pool: bgp}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {{app: spread}}
  ports: [{{port: 80, targetPort: 8080}}]
"
    )
}

/// One demo pod pinned to node 1, behind Service `survivor-bgp` (the BGP pool of
/// [`bgp_manifests`], `externalTrafficPolicy: Cluster`, so both nodes announce it) and
/// Service `survivor-l2` (the layer-2 pool of [`l2_manifests`], with the highest IP of the
/// pool that no Service holds and MetalLB's election gives to node 2). Node 2 can then fail
/// while the pod keeps answering: what the client sees is the failover alone (with a backend
/// on the failed node, kube-proxy would go on sending it a share of the requests until the
/// node is marked NotReady, 40 s later, whatever announces the IP).
pub fn survivor_manifests(cluster: &Cluster) -> Result<String> {
    let names = cluster.names();
    let (n1, n2) = (names[0].as_str(), names[1].as_str());
    // An IP another Service holds would never be given (no sharing key).
    let services = cluster.kubectl().get(&["services", "-A"])?;
    let held: Vec<&str> = services["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| {
            s["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter_map(|i| i["ip"].as_str())
        .collect();
    let l2_ip = (200..210)
        .rev()
        .map(|last| std::net::IpAddr::from([10, 95, 0, last]))
        .filter(|ip| !held.contains(&ip.to_string().as_str()))
        .find(|ip| ferrolb::l2::elect(&[(n1, 0), (n2, 0)], *ip) == Some(n2))
        .context("node 2 wins no free IP of the layer-2 pool")?;
    let workload = image::pinned(&image::demo_workload("survivor", Some(1)), n1);
    Ok(format!(
        "{workload}---
apiVersion: v1
kind: Service
metadata:
  name: survivor-bgp
  namespace: default
  annotations: {{metallb.io/address-pool: bgp}}
spec:
  type: LoadBalancer
  selector: {{app: survivor}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata:
  name: survivor-l2
  namespace: default
  annotations: {{metallb.io/loadBalancerIPs: {l2_ip}}}
spec:
  type: LoadBalancer
  selector: {{app: survivor}}
  ports: [{{port: 80, targetPort: 8080}}]
"
    ))
}

/// What a drain did to a client's requests.
#[derive(Debug)]
pub struct Drained {
    /// Requests sent while the node was drained.
    pub requests: usize,
    /// Of those, failed.
    pub failed: usize,
    /// Requests sent from the uncordon until 3 s after the node is routed to again.
    pub rejoin_requests: usize,
    /// Of those, failed (a node announced before its kube-proxy has rules for the new pod
    /// would fail a share of them; the speaker waits for kube-proxy's health check).
    pub rejoin_failed: usize,
}

/// `kubectl drain` of node `node` (an index into the cluster's nodes) under a request loop
/// to `ip`, the IP of [`spread_manifests`]'s Service: waits until the ToR routes it to every
/// node, drains, checks that the ToR no longer routes it to the drained node, then
/// `kubectl uncordon` and waits until the ToR routes it to every node again.
pub fn drain_under_traffic(lab: &ChartLab, ip: &str, node: usize) -> Result<Drained> {
    let kubectl = lab.cluster.kubectl();
    let mut all = lab.cluster.addresses().to_vec();
    all.sort();
    let routed_to_all = |what: &str| {
        wait_for(what, Duration::from_secs(90), || {
            let mut hops = crate::lab::nexthops(&lab.rtr, ip)?;
            hops.sort();
            Ok((hops == all).then_some(()))
        })
    };
    routed_to_all("the Local Service routed to every node")?;
    // And answered from every node: a node announced as soon as its pod is ready may not
    // have kube-proxy's rules for it yet (see `Drained::rejoin_failed`).
    wait_for("answers from every node", Duration::from_secs(30), || {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let answer = lab
                .client
                .run("curl", &["-s", "-m", "1", &format!("http://{ip}/")])
                .unwrap_or_default();
            let Some(node) = answer
                .split_whitespace()
                .find_map(|w| w.strip_prefix("node="))
            else {
                return Ok(None);
            };
            seen.insert(node.to_string());
        }
        Ok((seen.len() == lab.cluster.names().len()).then_some(()))
    })?;
    let name = lab.cluster.names()[node].clone();
    let address = lab.cluster.addresses()[node].clone();
    let requests = RequestLoop::start(&lab.client, ip, Duration::from_millis(20))?;
    std::thread::sleep(Duration::from_secs(1));
    kubectl.run(
        &[
            "drain",
            &name,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=120s",
        ],
        None,
    )?;
    let hops = crate::lab::nexthops(&lab.rtr, ip)?;
    std::thread::sleep(Duration::from_secs(1));
    let results = requests.finish();
    if hops.is_empty() || hops.contains(&address) {
        bail!("after draining {name}, the ToR routes {ip} to {hops:?}");
    }
    kubectl.run(&["uncordon", &name], None)?;
    let rejoining = RequestLoop::start(&lab.client, ip, Duration::from_millis(20))?;
    if let Err(error) = routed_to_all("the Local Service routed to the uncordoned node again") {
        bail!(
            "{error:#}\nToR: {:?}\n{}\n{}",
            crate::lab::nexthops(&lab.rtr, ip),
            kubectl.run(&["get", "pods", "-A", "-o", "wide"], None)?,
            kubectl.run(&["get", "nodes", "-o", "wide"], None)?
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    let rejoined = rejoining.finish();
    Ok(Drained {
        requests: results.len(),
        failed: results.iter().filter(|(_, ok)| !ok).count(),
        rejoin_requests: rejoined.len(),
        rejoin_failed: rejoined.iter().filter(|(_, ok)| !ok).count(),
    })
}

/// A request loop from the client: one HTTP request every `every`, each on a thread of its
/// own (so a request that hangs does not hold the next back), with a 1 s timeout; each
/// recorded with its start and whether the demo backend answered.
#[derive(Debug)]
pub struct RequestLoop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    results: std::sync::Arc<std::sync::Mutex<Vec<Request>>>,
    driver: Option<std::thread::JoinHandle<()>>,
}

/// One `GET /` to `address`: `Err` names the step that failed (each has 1 s).
fn one_request(address: std::net::SocketAddr) -> Result<(), String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(1);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    let read = stream.read_to_string(&mut answer);
    if answer.contains("pod=") {
        return Ok(());
    }
    Err(match read {
        Err(e) => format!("answer: {e} after {} bytes", answer.len()),
        Ok(n) => format!("answer without pod= ({n} bytes)"),
    })
}

/// How many failed requests of a loop are printed, with their reason.
const FAILURES_SHOWN: usize = 20;

impl RequestLoop {
    /// Starts requesting `http://ip/` from the client's namespace.
    pub fn start(client: &Netns, ip: &str, every: Duration) -> Result<RequestLoop> {
        use std::sync::atomic::Ordering;
        let address: std::net::SocketAddr = format!("{ip}:80").parse()?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let path = format!("/run/netns/{}", client.name());
        let (flag, out) = (stop.clone(), results.clone());
        let driver = std::thread::spawn(move || {
            // Threads made from here inherit the namespace.
            let entered = std::fs::File::open(&path).ok().is_some_and(|file| {
                nix::sched::setns(
                    std::os::fd::AsFd::as_fd(&file),
                    nix::sched::CloneFlags::CLONE_NEWNET,
                )
                .is_ok()
            });
            if !entered {
                return;
            }
            let mut workers: Vec<std::thread::JoinHandle<()>> = Vec::new();
            let printed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut next = std::time::Instant::now();
            while !flag.load(Ordering::Relaxed) {
                // Finished requests' threads are joined as the loop goes (a loop of minutes
                // would otherwise keep tens of thousands of finished threads' stacks).
                let mut i = 0;
                while i < workers.len() {
                    if workers[i].is_finished() {
                        let _ = workers.swap_remove(i).join();
                    } else {
                        i += 1;
                    }
                }
                let out = out.clone();
                let printed = printed.clone();
                workers.push(std::thread::spawn(move || {
                    let started = std::time::Instant::now();
                    let outcome = one_request(address);
                    // The first failures are shown (with the test's output when it fails),
                    // with the Unix time to compare with the daemons' logs.
                    if let Err(why) = &outcome
                        && printed.fetch_add(1, Ordering::Relaxed) < FAILURES_SHOWN
                    {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default();
                        eprintln!(
                            "request to {address} failed after {} ms, at Unix time {:.3}: {why}",
                            started.elapsed().as_millis(),
                            now.as_secs_f64()
                        );
                    }
                    let ok = outcome.is_ok();
                    let ended = std::time::Instant::now();
                    if let Ok(mut results) = out.lock() {
                        results.push(Request { started, ok, ended });
                    }
                }));
                next += every;
                std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
            }
            for worker in workers {
                let _ = worker.join();
            }
        });
        Ok(RequestLoop {
            stop,
            results,
            driver: Some(driver),
        })
    }

    /// Every request finished so far, in start order.
    pub fn requests(&self) -> Vec<Request> {
        let mut requests = self.results.lock().map(|r| r.clone()).unwrap_or_default();
        requests.sort_by_key(|r| r.started);
        requests
    }

    /// Stops it and returns every request, in start order.
    pub fn finish_requests(mut self) -> Vec<Request> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
        self.requests()
    }

    /// Stops it and returns every request's start and outcome, in start order.
    pub fn finish(self) -> Vec<(std::time::Instant, bool)> {
        self.finish_requests()
            .into_iter()
            .map(|r| (r.started, r.ok))
            .collect()
    }
}

/// One request of a [`RequestLoop`].
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// When it was sent.
    pub started: std::time::Instant,
    /// Whether the pod's answer came.
    pub ok: bool,
    /// When it was answered or failed.
    pub ended: std::time::Instant,
}

impl Drop for RequestLoop {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
    }
}

/// The start and outcome of the requests in `requests` (in start order) that a fault at
/// `at` may have failed: those sent from 1 s before it (a request's timeout), but not those
/// that had failed before it. Those are not its doing (a connection the backend reset, say),
/// and would stretch [`failure_window`] back to them.
pub fn around_fault(
    requests: &[Request],
    at: std::time::Instant,
) -> Vec<(std::time::Instant, bool)> {
    requests
        .iter()
        .filter(|r| r.started + Duration::from_secs(1) > at && (r.ok || r.ended >= at))
        .map(|r| (r.started, r.ok))
        .collect()
}

/// The window of failed requests in `results` (in start order): from the first failed
/// request's start to the start of the first request that succeeded after the last failure;
/// zero when none failed, `None` when the requests never succeeded again.
pub fn failure_window(results: &[(std::time::Instant, bool)]) -> Option<Duration> {
    let Some(first) = results.iter().position(|(_, ok)| !ok) else {
        return Some(Duration::ZERO);
    };
    let last = results.iter().rposition(|(_, ok)| !ok)?;
    let recovered = results[last + 1..].iter().find(|(_, ok)| *ok)?;
    Some(recovered.0.duration_since(results[first].0))
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command's closing parenthesis.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// The PIDs of the processes named `comm` in network namespace `ns` (zombies included).
fn pids_in(ns: &Netns, comm: &str) -> Result<Vec<i32>> {
    use std::os::unix::fs::MetadataExt as _;
    let want = std::fs::metadata(format!("/run/netns/{}", ns.name()))?.ino();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let same_ns =
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == want);
        let named =
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm);
        if same_ns && named {
            pids.push(pid);
        }
    }
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_window_counts_from_the_first_request_that_failed_after_the_fault() {
        let t0 = std::time::Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let request = |started: u64, ok: bool, ended: u64| Request {
            started: ms(started),
            ok,
            ended: ms(ended),
        };
        let fault = ms(2_000);
        let requests = [
            // Long before the fault: not counted, whatever its outcome.
            request(500, false, 501),
            // Reset 800 ms before the fault: not its doing.
            request(1_200, false, 1_201),
            request(1_220, true, 1_222),
            // Sent before the fault, timed out after it: counted.
            request(1_990, false, 2_990),
            request(2_010, false, 3_010),
            request(3_000, true, 3_002),
            request(3_020, true, 3_022),
        ];
        let counted = around_fault(&requests, fault);
        assert_eq!(counted.len(), 5);
        assert_eq!(counted[0], (ms(1_220), true));
        assert_eq!(failure_window(&counted), Some(Duration::from_millis(1_010)));
        // Counted from the reset instead, the window would have been 1,800 ms.
        let all: Vec<_> = requests.iter().map(|r| (r.started, r.ok)).collect();
        assert_eq!(
            failure_window(&all[1..]),
            Some(Duration::from_millis(1_800))
        );
    }

    #[test]
    fn only_containers_held_in_crash_loop_back_off_are_named_with_their_last_end() {
        let pods = serde_json::json!({"items": [
            {
                "metadata": {"name": "metallb-frr-k8s-xq6p5"},
                "status": {"containerStatuses": [
                    {"name": "controller", "restartCount": 0, "state": {"running": {}}},
                    {
                        "name": "frr",
                        "restartCount": 8,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"reason": "Error", "exitCode": 143}}
                    }
                ]}
            },
            {
                "metadata": {"name": "metallb-speaker-n9gk6"},
                "status": {
                    "initContainerStatuses": [{
                        "name": "cp-frr-files",
                        "restartCount": 2,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {}
                    }],
                    "containerStatuses": [{
                        "name": "speaker",
                        "restartCount": 1,
                        "state": {"waiting": {"reason": "ContainerCreating"}}
                    }]
                }
            },
            {"metadata": {"name": "pending"}, "status": {}}
        ]});
        assert_eq!(
            crash_looping(&pods),
            [
                "metallb-frr-k8s-xq6p5/frr: 8 restarts, last ended Error (exit 143)",
                "metallb-speaker-n9gk6/cp-frr-files: 2 restarts, last ended ? (exit ?)",
            ]
        );
        assert!(crash_looping(&serde_json::json!({"items": []})).is_empty());
        // Every container that restarted, looping or not.
        assert_eq!(
            restarted(&pods),
            [
                "metallb-frr-k8s-xq6p5/frr: 8 restarts, last ended Error (exit 143)",
                "metallb-speaker-n9gk6/cp-frr-files: 2 restarts, last ended ? (exit ?)",
                "metallb-speaker-n9gk6/speaker: 1 restarts, last ended ? (exit ?)",
            ]
        );
    }
}
