//! The local lab `hack/lab.sh` brings up and leaves running: a whole ferrolb cluster on one
//! machine, in network namespaces on a switch of their own.
//!
//! ```text
//!  netns ferrolb-sw: bridge br0
//!   ├─ ferrolb-cp   10.99.0.2    etcd, kube-apiserver :6443-ish, ferrolb controller
//!   ├─ ferrolb-rtr  10.99.0.1    FRR "tor", AS 64513 (eBGP), ECMP (maximum-paths 8), BFD 100 ms
//!   │               fd99::1      the same router over IPv6 (peer "tor-v6")
//!   ├─ ferrolb-rr   10.99.0.3    FRR "rr", AS 64512 (iBGP), TCP-MD5 password, ECMP
//!   ├─ ferrolb-bird 10.99.0.4    BIRD 2 "bird", AS 64514, BFD 100 ms, TCP-MD5, kernel ECMP
//!   ├─ ferrolb-gobgp 10.99.0.5   GoBGP "gobgp", AS 64515 (RIB only)
//!   ├─ ferrolb-n1   10.99.0.11   node n1: FRR, AS 64512 (and fd99::11)
//!   ├─ ferrolb-n2   10.99.0.12   node n2: FRR, AS 64512 (and fd99::12)
//!   └─ ferrolb-cli  10.99.0.100  client, default route via the router (which sends it no
//!                                ICMP redirects, so its packets take the router's ECMP)
//! ```
//!
//! The control plane lives in its own namespace on the lab network, so every node can reach
//! it; from the host, `hack/lab.sh kubectl …` runs kubectl there. The configuration is
//! `examples/lab/lab.yaml`; the harness adds the Node objects (there is no kubelet). Each node's
//! FRR is loaded with what `ferrolb render frr --node N` makes of the cluster's objects.
//! State (namespaces, PIDs, directories) is kept in the lab directory, so `down` ends exactly
//! what `up` started, by PID. Scenarios restart parts by the PIDs recorded there
//! ([`restart_speaker`], [`restart_controller`], [`crash_daemon`]).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::control_plane::ControlPlane;
use crate::frr::{Build, Frr, spawn_daemon};
use crate::kubectl::Kubectl;
use crate::kubenode::KernelSettings;
use crate::netns::{Netns, Switch};
use crate::paths;
use crate::process::{Process, stop_pid, wait_for};
use ferrolb::frr::Dialect;

pub mod others;
pub mod pods;

/// How the lab runs its nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Real Kubernetes nodes (kubelet, containerd, kube-proxy), ferrolb installed by its
    /// Helm chart, demo pods behind the Services ([`pods`]): what `hack/lab.sh up` runs.
    Pods,
    /// ferrolb's controller and speakers as processes beside FRR instances of the lab's
    /// own, Node objects and EndpointSlices written by the harness: what the lab scenarios
    /// (`tests/lab.rs`) and benchmarks run, as they restart speakers, controllers and FRR
    /// daemons by PID ([`restart_speaker`], [`crash_daemon`]).
    Processes,
}

/// The lab's nodes: name and address.
pub const NODES: [(&str, &str); 2] = [("n1", "10.99.0.11"), ("n2", "10.99.0.12")];
/// The lab network's IPv6 prefix: the router is `::1`, node n1 `::11`, n2 `::12`.
pub const NET6: &str = "fd99::";
/// The pools whose IPs the routers should hold.
pub const BGP_POOLS: [&str; 2] = ["lab-bgp", "lab-bgp-v6"];
const PREFIX: &str = "ferrolb";
const CONTROL_PLANE: &str = "10.99.0.2";
/// The iBGP router's address.
pub const RR: &str = "10.99.0.3";
/// The password the iBGP router requires (the lab's Secret `rr-password` holds it).
pub const RR_PASSWORD: &str = "lab-secret";

/// The router's configuration: eBGP to both nodes with BFD, ECMP.
pub const ROUTER_CONFIG: &str = include_str!("../routers/lab-tor.conf");

/// The iBGP router: same AS as the nodes, MD5-protected sessions, ECMP.
pub fn rr_config() -> String {
    format!(
        "frr defaults traditional
log stdout informational
!
router bgp 64512
 bgp router-id {RR}
 bgp log-neighbor-changes
 neighbor NODES peer-group
 neighbor NODES remote-as 64512
 neighbor NODES password {RR_PASSWORD}
 neighbor NODES timers 3 9
 neighbor NODES timers connect 1
 neighbor 10.99.0.11 peer-group NODES
 neighbor 10.99.0.12 peer-group NODES
 !
 address-family ipv4 unicast
  maximum-paths ibgp 8
 exit-address-family
exit
"
    )
}

/// The lab's namespace called `name` (`rtr`, `rr`, `cp`, `cli`, `n1`, …).
pub fn ns(name: &str) -> String {
    format!("{PREFIX}-{name}")
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// What `up` started: every PID (ended by `down`), the namespaces, and the PIDs of the
/// parts scenarios restart, by role (`controller`, `speaker-n1`, `n1/bgpd`, …).
#[derive(Debug, Default, Serialize, Deserialize)]
struct LabState {
    pids: Vec<u32>,
    namespaces: Vec<String>,
    #[serde(default)]
    roles: std::collections::BTreeMap<String, u32>,
    /// Real nodes ([`Mode::Pods`]), stopped first.
    #[serde(default)]
    nodes: Vec<pods::NodeRecord>,
    /// The kernel settings kubelet changes, as they were before ([`Mode::Pods`]).
    #[serde(default)]
    kernel: Vec<(PathBuf, String)>,
}

impl LabState {
    fn read(dir: &Path) -> Result<LabState> {
        let text = std::fs::read_to_string(state_file(dir))
            .with_context(|| format!("no lab state in {}", dir.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    fn write(&self, dir: &Path) -> Result<()> {
        std::fs::write(state_file(dir), serde_json::to_string_pretty(self)?)?;
        Ok(())
    }

    fn role(&self, role: &str) -> Result<u32> {
        self.roles
            .get(role)
            .copied()
            .with_context(|| format!("the lab has no {role}"))
    }

    /// Records `pid` as `role`, replacing the PID it had.
    fn replace(&mut self, role: &str, pid: u32) {
        if let Some(old) = self.roles.insert(role.to_string(), pid) {
            self.pids.retain(|p| *p != old);
        }
        self.pids.push(pid);
    }
}

/// kubectl in the control plane's namespace.
pub fn kubectl(dir: &Path) -> Kubectl {
    Kubectl::new(&dir.join("cp/kubeconfig")).within(Some(&ns("cp")))
}

fn node_manifest(name: &str, address: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{kubernetes.io/hostname: {name}}}}}\nstatus: {{addresses: [{{type: InternalIP, address: {address}}}]}}\n---\n"
    )
}

/// Where the lab's Services have ready endpoints (there is no kubelet yet, so the harness
/// writes the EndpointSlices a cluster would have): `web` on both nodes, `api`
/// (`externalTrafficPolicy: Local`) on n1 only, `printer` on n2.
pub const ENDPOINTS: [(&str, &[(&str, &str)]); 5] = [
    ("web", &[("10.244.1.10", "n1"), ("10.244.2.10", "n2")]),
    ("web6", &[("fd44:1::10", "n1"), ("fd44:2::10", "n2")]),
    ("api", &[("10.244.1.11", "n1")]),
    ("printer", &[("10.244.2.12", "n2")]),
    ("printer6", &[("fd44:2::12", "n2")]),
];

/// The state of one endpoint, as its EndpointSlice's `conditions` say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    /// Ready (and so serving).
    Ready,
    /// Terminating but still serving (`ready: false, serving: true, terminating: true`).
    TerminatingServing,
    /// Terminating and no longer serving.
    TerminatingGone,
    /// Not ready yet (`ready: false, serving: false`).
    NotReady,
}

impl EndpointState {
    fn conditions(self) -> &'static str {
        match self {
            EndpointState::Ready => "{ready: true, serving: true, terminating: false}",
            EndpointState::TerminatingServing => "{ready: false, serving: true, terminating: true}",
            EndpointState::TerminatingGone => "{ready: false, serving: false, terminating: true}",
            EndpointState::NotReady => "{ready: false, serving: false, terminating: false}",
        }
    }
}

/// The harness's EndpointSlice (`discovery.k8s.io/v1`) for Service `namespace/name`, with
/// ready endpoints at `(ip, node)`. It is managed by the harness (its own `managed-by`
/// label), so kube-controller-manager's EndpointSlice controller, which writes its own
/// (empty, as there are no pods) slices for the Service, leaves it alone.
pub fn endpoints_manifest(namespace: &str, name: &str, ready: &[(&str, &str)]) -> String {
    let endpoints: Vec<(&str, &str, EndpointState)> = ready
        .iter()
        .map(|&(ip, node)| (ip, node, EndpointState::Ready))
        .collect();
    endpoint_slice_manifest(namespace, name, &endpoints)
}

/// As [`endpoints_manifest`], with each endpoint's state given.
pub fn endpoint_slice_manifest(
    namespace: &str,
    name: &str,
    endpoints: &[(&str, &str, EndpointState)],
) -> String {
    let family = if endpoints.iter().any(|(ip, _, _)| ip.contains(':')) {
        "IPv6"
    } else {
        "IPv4"
    };
    let list: Vec<String> = endpoints
        .iter()
        .map(|(ip, node, state)| {
            format!(
                "{{addresses: [\"{ip}\"], nodeName: {node}, conditions: {}}}",
                state.conditions()
            )
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-lab, namespace: {namespace}, labels: {{kubernetes.io/service-name: {name}, endpointslice.kubernetes.io/managed-by: e2e.ferrolb.io}}}}\naddressType: {family}\nendpoints: [{}]\nports: [{{port: 80, protocol: TCP}}]\n---\n",
        list.join(", ")
    )
}

/// What `ferrolb render frr --node NODE -f INPUT --frr-version V` prints for FRR of
/// `dialect`.
pub fn render_frr(node: &str, input: &Path, dialect: Dialect) -> Result<String> {
    let out = std::process::Command::new(paths::ferrolb()?)
        .args(["render", "frr", "--node", node, "-f"])
        .arg(input)
        .args(["--frr-version", dialect.version()])
        .output()
        .context("running ferrolb render frr")?;
    if !out.status.success() {
        bail!(
            "ferrolb render frr --node {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn start_controller(cp: &Netns, kubeconfig: &Path, dir: &Path) -> Result<Process> {
    start_replica(cp, kubeconfig, dir, 0)
}

/// Controller replica `index`: pod name `controller-INDEX`, health on a port of its own.
fn start_replica(cp: &Netns, kubeconfig: &Path, dir: &Path, index: u16) -> Result<Process> {
    let mut controller = cp.command(paths::ferrolb()?);
    controller
        .arg("controller")
        .args(["--pod-name", &format!("controller-{index}")])
        .args([
            "--health-addr",
            &format!("{CONTROL_PLANE}:{}", 17472 + index),
        ])
        .args(["--metrics-addr", "none"])
        .env("KUBECONFIG", kubeconfig);
    let log = match index {
        0 => dir.join("controller.log"),
        _ => dir.join(format!("controller-{index}.log")),
    };
    Process::spawn("controller", controller, &log)
}

/// Starts a second controller replica (pod name `controller-1`, role `controller-1`): a
/// standby, leader once the first stops.
pub fn add_controller(dir: &Path) -> Result<()> {
    let mut state = LabState::read(dir)?;
    let replica = start_replica(
        &Netns::attach(&ns("cp")),
        &dir.join("cp/kubeconfig"),
        dir,
        1,
    )?;
    state.replace("controller-1", replica.keep());
    state.write(dir)
}

/// The role (`controller`, `controller-1`) of the controller replica holding the leader
/// Lease, if one holds it.
pub fn leading_controller(dir: &Path) -> Result<Option<String>> {
    let lease = kubectl(dir).get(&[
        "--request-timeout=3s",
        "lease",
        "-n",
        "metallb-system",
        "ferrolb-controller",
    ])?;
    Ok(match lease["spec"]["holderIdentity"].as_str() {
        Some("controller-0") => Some("controller".to_string()),
        Some(other) => other.strip_prefix("controller-").map(|_| other.to_string()),
        None => None,
    })
}

/// A process [`kill`] ended, with what it takes to start it again as it was.
#[derive(Debug, Clone)]
pub struct Killed {
    /// Its role in the lab.
    pub role: String,
    argv: Vec<std::ffi::OsString>,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    netns: Option<String>,
    log: PathBuf,
}

/// The lab namespace process `pid` runs in, if any.
fn netns_of(pid: u32) -> Result<Option<String>> {
    use std::os::unix::fs::MetadataExt as _;
    let own = std::fs::metadata(format!("/proc/{pid}/ns/net"))?;
    for entry in std::fs::read_dir("/run/netns")? {
        let entry = entry?;
        if let Ok(meta) = std::fs::metadata(entry.path())
            && meta.ino() == own.ino()
            && meta.dev() == own.dev()
        {
            return Ok(Some(entry.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

/// Kills the lab's `role` (`speaker-n1`, `controller`, `controller-1`, `kube-apiserver`,
/// `etcd`) with SIGKILL, a crash, after reading its command line, environment, namespace and
/// log from /proc so that [`respawn`] starts the same again.
pub fn kill(dir: &Path, role: &str) -> Result<Killed> {
    use std::os::unix::ffi::OsStrExt as _;
    let pid = LabState::read(dir)?.role(role)?;
    if !alive(dir, role)? {
        bail!("{role} (PID {pid}) is not running: it exited, and no fault killed it");
    }
    let split = |bytes: Vec<u8>| -> Vec<std::ffi::OsString> {
        bytes
            .split(|b| *b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| std::ffi::OsStr::from_bytes(part).to_os_string())
            .collect()
    };
    let mut argv = split(std::fs::read(format!("/proc/{pid}/cmdline"))?);
    // Caught before `setsid` and `ip netns exec` exec'ed into the program (just started):
    // the program's own command line is what follows them (they are added again).
    if argv.first().is_some_and(|a| a == "setsid") {
        argv.remove(0);
    }
    if argv.len() > 4 && argv[0] == "ip" && argv[1] == "netns" && argv[2] == "exec" {
        argv.drain(..4);
    }
    let env = split(std::fs::read(format!("/proc/{pid}/environ"))?)
        .into_iter()
        .filter_map(|pair| {
            let bytes = pair.as_bytes();
            let at = bytes.iter().position(|b| *b == b'=')?;
            Some((
                std::ffi::OsStr::from_bytes(&bytes[..at]).to_os_string(),
                std::ffi::OsStr::from_bytes(&bytes[at + 1..]).to_os_string(),
            ))
        })
        .collect();
    let netns = netns_of(pid)?;
    let log = std::fs::read_link(format!("/proc/{pid}/fd/1"))
        .with_context(|| format!("{role}'s output"))?;
    if argv.is_empty() {
        bail!("{role} (PID {pid}) has no command line: it is gone");
    }
    let raw = i32::try_from(pid)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(raw),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    wait_gone(pid, role)?;
    Ok(Killed {
        role: role.to_string(),
        argv,
        env,
        netns,
        log,
    })
}

/// Waits until `pid` is gone or a zombie, reaping it when it is this process's child.
fn wait_gone(pid: u32, what: &str) -> Result<()> {
    let raw = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
    wait_for(&format!("{what} to die"), Duration::from_secs(10), || {
        let _ = nix::sys::wait::waitpid(raw, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        Ok(gone(pid).then_some(()))
    })
}

/// Starts what [`kill`] ended again, as it was started, and records its new PID.
pub fn respawn(dir: &Path, killed: &Killed) -> Result<()> {
    let mut state = LabState::read(dir)?;
    let mut command = match &killed.netns {
        Some(name) => Netns::attach(name).command(&killed.argv[0]),
        None => std::process::Command::new(&killed.argv[0]),
    };
    command
        .args(&killed.argv[1..])
        .env_clear()
        .envs(killed.env.iter().map(|(k, v)| (k, v)));
    let process = Process::spawn(&killed.role, command, &killed.log)?;
    let pid = process.keep();
    state.replace(&killed.role, pid);
    state.write(dir)?;
    // Returns once `setsid` and `ip netns exec` have exec'ed into the program, so that a
    // kill right after reads the program's own command line.
    let program = killed.argv[0].clone();
    wait_for(
        &format!("{} to start", killed.role),
        Duration::from_secs(5),
        || {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            Ok(
                (first == std::os::unix::ffi::OsStrExt::as_bytes(program.as_os_str()))
                    .then_some(()),
            )
        },
    )
}

/// Stops node `name`'s speaker (SIGTERM, as Kubernetes does) and starts a new one.
pub fn restart_speaker(dir: &Path, name: &str) -> Result<()> {
    let mut state = LabState::read(dir)?;
    let role = format!("speaker-{name}");
    stop_pid(state.role(&role)?, Duration::from_secs(10));
    let address = NODES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
        .with_context(|| format!("no node {name}"))?;
    let frr = Frr::client(&dir.join(name), &ns(name));
    let speaker = start_speaker(
        &Netns::attach(&ns(name)),
        name,
        address,
        &frr,
        &dir.join("cp/kubeconfig"),
        dir,
    )?;
    state.replace(&role, speaker.keep());
    state.write(dir)
}

/// The PID of a part the lab started: `controller`, `speaker-n1`, `speaker-n2`, or a
/// daemon restarted by [`crash_daemon`] (`n1/bgpd`).
pub fn pid(dir: &Path, role: &str) -> Result<u32> {
    LabState::read(dir)?.role(role)
}

/// Whether the lab's `role` still runs (neither gone nor a zombie).
pub fn alive(dir: &Path, role: &str) -> Result<bool> {
    Ok(!gone(LabState::read(dir)?.role(role)?))
}

/// Whether process `pid` has ended: gone from /proc, or a zombie left for its parent.
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(text) => text
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}

/// Sets node `name`'s port on the lab switch up or down (down: a hard failure, seen by its
/// peers only through BFD or hold timers).
pub fn set_node_port(name: &str, up: bool) -> Result<()> {
    Switch::existing(&ns("sw")).set_port(name, up)
}

/// Cuts node `name` off from the control plane and the other nodes (`cut`: its packets to
/// and from them dropped in its namespace), or joins it back; the routers and the client
/// still reach it.
pub fn cut_off_node(dir: &Path, name: &str, cut: bool) -> Result<()> {
    let node = Netns::attach(&ns(name));
    let table = "ferrolb-cut-off";
    if !cut {
        node.run("nft", &["delete", "table", "inet", table])?;
        return Ok(());
    }
    let own = node.ip(&["-4", "-o", "addr", "show"])?;
    let own = own
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("10.99.0."))
        .find_map(|rest| rest.split('/').next())
        .with_context(|| format!("no lab address in {own}"))?;
    // The control plane, and every node's address (10.99.0.10-99) but this one.
    let others = format!("{CONTROL_PLANE}, 10.99.0.10-10.99.0.99");
    let rules = format!(
        "table inet {table} {{
  chain in {{ type filter hook input priority 0; ip saddr {{ {others} }} ip saddr != 10.99.0.{own} drop; }}
  chain out {{ type filter hook output priority 0; ip daddr {{ {others} }} ip daddr != 10.99.0.{own} drop; }}
}}
"
    );
    let file = dir.join(format!("{name}/cut-off.nft"));
    std::fs::write(&file, rules)?;
    node.run("nft", &["-f", &file.to_string_lossy()])?;
    Ok(())
}

/// Drops node `name`'s traffic to and from the lab's routers (`cut`), or lets it through
/// again: its BGP and BFD sessions fail while the control plane and the other nodes still
/// reach it.
pub fn cut_from_routers(dir: &Path, name: &str, cut: bool) -> Result<()> {
    let routers4 = format!("10.99.0.1, {RR}, 10.99.0.4, 10.99.0.5");
    let routers6 = format!("{NET6}1");
    nft_table(
        dir,
        name,
        "ferrolb-cut-routers",
        cut.then(|| {
            format!(
                "  chain in {{ type filter hook input priority 0; ip saddr {{ {routers4} }} drop; ip6 saddr {routers6} drop; }}
  chain out {{ type filter hook output priority 0; ip daddr {{ {routers4} }} drop; ip6 daddr {routers6} drop; }}
"
            )
        }),
    )
}

/// Drops node `name`'s gossip (UDP to and from the memberlist port) while `block`.
pub fn block_gossip(dir: &Path, name: &str, block: bool) -> Result<()> {
    let port = ferrolb::l2::members::DEFAULT_PORT;
    nft_table(
        dir,
        name,
        "ferrolb-no-gossip",
        block.then(|| {
            format!(
                "  chain in {{ type filter hook input priority 0; udp dport {port} drop; udp sport {port} drop; }}
  chain out {{ type filter hook output priority 0; udp dport {port} drop; udp sport {port} drop; }}
"
            )
        }),
    )
}

/// Loads nftables table `table` with `chains` in node `name`'s namespace, or deletes it
/// (`None`).
fn nft_table(dir: &Path, name: &str, table: &str, chains: Option<String>) -> Result<()> {
    let node = Netns::attach(&ns(name));
    let Some(chains) = chains else {
        node.run("nft", &["delete", "table", "inet", table])?;
        return Ok(());
    };
    let file = dir.join(format!("{name}/{table}.nft"));
    std::fs::write(&file, format!("table inet {table} {{\n{chains}}}\n"))?;
    node.run("nft", &["-f", &file.to_string_lossy()])?;
    Ok(())
}

/// Stops the controller (SIGTERM) and starts a new one.
pub fn restart_controller(dir: &Path) -> Result<()> {
    let mut state = LabState::read(dir)?;
    stop_pid(state.role("controller")?, Duration::from_secs(10));
    let controller = start_controller(&Netns::attach(&ns("cp")), &dir.join("cp/kubeconfig"), dir)?;
    state.replace("controller", controller.keep());
    state.write(dir)
}

/// Kills FRR daemon `daemon` of node `name` with SIGKILL (a crash) and starts it again
/// empty, as a supervisor would: whatever configuration it had is gone until the speaker
/// notices and puts it back.
pub fn crash_daemon(dir: &Path, name: &str, daemon: &str) -> Result<()> {
    let mut state = LabState::read(dir)?;
    let run = dir.join(name).join("run");
    let pid_file = run.join(format!("{daemon}.pid"));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{} holds no PID", pid_file.display()))?;
    let target = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL)?;
    // The daemon is a child of whoever started it; it is gone once /proc says so (zombie or
    // reaped).
    wait_gone(u32::try_from(pid)?, &format!("{daemon} of {name}"))?;
    let process = spawn_daemon(&Netns::attach(&ns(name)), &dir.join(name), daemon)?;
    state.replace(&format!("{name}/{daemon}"), process.keep());
    state.write(dir)
}

/// Starts `ferrolb speaker` for node `name` in its namespace, driving the node's FRR
/// instance `frr` through its own socket and configuration directories, with the lab's
/// kubeconfig (the API server is on the lab network). Health on the node's address.
pub fn start_speaker(
    node: &Netns,
    name: &str,
    address: &str,
    frr: &Frr,
    kubeconfig: &Path,
    dir: &Path,
) -> Result<Process> {
    let target = frr.target();
    let mut speaker = node.command(paths::ferrolb()?);
    speaker
        .arg("speaker")
        .args(["--node-name", name])
        .arg("--frr-vty-dir")
        .arg(&target.vty_dir)
        .arg("--frr-config-dir")
        .arg(&target.config_dir)
        .arg("--frr-vtysh")
        .arg(&target.vtysh)
        .arg("--frr-reload")
        .arg(&target.reload_script)
        .args(["--health-addr", &format!("{address}:17472")])
        .args(["--metrics-addr", "none"])
        .env("KUBECONFIG", kubeconfig);
    Process::spawn(
        &format!("speaker-{name}"),
        speaker,
        &dir.join(format!("speaker-{name}.log")),
    )
}

/// A lab brought up by a test or benchmark, taken down however it ends.
#[derive(Debug)]
pub struct Up(pub PathBuf);

impl Up {
    /// Brings a lab up in `dir` with its nodes as processes ([`Mode::Processes`]), refusing
    /// while a lab is already up; the summary `up` prints.
    pub fn start(dir: &Path) -> Result<(Up, String)> {
        Up::start_with(dir, Mode::Processes)
    }

    /// [`Up::start`] with the nodes run as `mode` says.
    pub fn start_with(dir: &Path, mode: Mode) -> Result<(Up, String)> {
        if Netns::exists(&ns("sw")) {
            bail!(
                "a lab is up (namespace {} exists): run `hack/lab.sh down` first",
                ns("sw")
            );
        }
        let summary = up(dir, mode)?;
        Ok((Up(dir.to_path_buf()), summary))
    }

    /// Leaves the lab up (`ferrolb-lab --dir DIR down` ends it).
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Err(error) = down(&self.0) {
            eprintln!("lab down: {error:#}");
        }
    }
}

/// Whether a benchmark binary whose figures are `names` should run, given the names on its
/// command line (none: all; a figure's name, or its group as `hack/bench.sh load` names
/// `load_stream_p99` and the other `load_…` figures), and root (network namespaces) is
/// there; says why when not.
pub fn bench_selected(names: &[&str]) -> bool {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let named = |w: &str| {
        names
            .iter()
            .any(|n| *n == w || n.strip_prefix(w).is_some_and(|rest| rest.starts_with('_')))
    };
    if !(wanted.is_empty() || wanted.iter().any(|w| named(w))) {
        return false;
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "{} skipped: need root (network namespaces)",
            names.join(", ")
        );
        return false;
    }
    true
}

/// Adds a node to a lab that is up: its namespace on the switch, its Node object, its FRR and
/// its speaker (the routers do not peer with it: it serves layer 2, and its BGP sessions stay
/// down). `down` ends it with the rest.
pub fn add_node(dir: &Path, name: &str, address: &str) -> Result<()> {
    let mut state = LabState::read(dir)?;
    state.namespaces.push(Netns::create(&ns(name))?.keep());
    state.write(dir)?;
    let node = Netns::attach(&ns(name));
    let suffix = address.rsplit('.').next().unwrap_or_default();
    Switch::existing(&ns("sw")).attach(
        &node,
        name,
        &[&format!("{address}/24"), &format!("{NET6}{suffix}/64")],
    )?;
    kubectl(dir).apply(&node_manifest(name, address))?;
    let frr = Frr::start(&node, &dir.join(name), &Build::frr10()?)?;
    let speaker = start_speaker(&node, name, address, &frr, &dir.join("cp/kubeconfig"), dir)?;
    state.replace(&format!("speaker-{name}"), speaker.keep());
    state.pids.extend(frr.keep());
    state.write(dir)
}

/// The MAC address of `node`'s lab interface.
pub fn node_mac(name: &str) -> Result<String> {
    let out = Netns::attach(&ns(name)).ip(&["-j", "link", "show", "eth0"])?;
    let links: serde_json::Value = serde_json::from_str(&out)?;
    links[0]["address"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no MAC for {name}'s eth0 in {out}"))
}

/// The MAC the client's kernel holds for `ip` (a neighbour entry that is not FAILED or
/// INCOMPLETE), if any.
pub fn client_neighbour(ip: &str) -> Result<Option<String>> {
    let out = Netns::attach(&ns("cli")).ip(&["-j", "neigh", "show", ip, "dev", "eth0"])?;
    let entries: serde_json::Value =
        serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out })?;
    Ok(entries.as_array().into_iter().flatten().find_map(|e| {
        let usable = e["state"]
            .as_array()
            .is_some_and(|s| !s.iter().any(|s| s == "FAILED" || s == "INCOMPLETE"));
        usable
            .then(|| e["lladdr"].as_str().map(str::to_string))
            .flatten()
    }))
}

/// The node the ServiceL2Status of `shop/service` names, if there is exactly one.
pub fn l2_owner(dir: &Path, service: &str) -> Result<Option<String>> {
    let list = kubectl(dir).get(&[
        "servicel2statuses",
        "-n",
        "metallb-system",
        "-l",
        &format!("metallb.io/service-name={service}"),
    ])?;
    let nodes: Vec<&str> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["status"]["node"].as_str())
        .collect();
    Ok(match nodes.as_slice() {
        [one] => Some(one.to_string()),
        _ => None,
    })
}

/// The gateways of `prefix` in `router`'s kernel FIB (several with ECMP, none without a route).
pub fn nexthops(router: &Netns, prefix: &str) -> Result<Vec<String>> {
    let family = if prefix.contains(':') { "-6" } else { "-4" };
    let text = router.ip(&[family, "-j", "route", "show", prefix])?;
    let routes: Value = serde_json::from_str(&text)?;
    let Some(route) = routes.as_array().and_then(|r| r.first()) else {
        return Ok(Vec::new());
    };
    Ok(match route["nexthops"].as_array() {
        Some(hops) => hops
            .iter()
            .filter_map(|h| h["gateway"].as_str().map(str::to_string))
            .collect(),
        None => route["gateway"]
            .as_str()
            .map(|g| vec![g.to_string()])
            .unwrap_or_default(),
    })
}

/// The IPs in a Service's `status.loadBalancer.ingress`.
pub fn ingress_ips(service: &Value) -> Vec<&str> {
    service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str())
        .collect()
}

fn bgp_ips(dir: &Path) -> Result<Vec<String>> {
    let services = kubectl(dir).get(&["services", "-A"])?;
    Ok(services["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            let pool = &s["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"];
            BGP_POOLS.iter().any(|p| pool == p)
        })
        .flat_map(|s| {
            s["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect())
}

/// Brings the lab up in `dir`, its nodes run as `mode` says, and leaves it running.
pub fn up(dir: &Path, mode: Mode) -> Result<String> {
    if state_file(dir).exists() {
        bail!(
            "a lab is already up (state in {}); run `hack/lab.sh down` first",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    let started = Instant::now();
    let switch = Switch::create(&ns("sw"))?;
    let cp = Netns::create(&ns("cp"))?;
    let rtr = Netns::create(&ns("rtr"))?;
    let rr = Netns::create(&ns("rr"))?;
    let cli = Netns::create(&ns("cli"))?;
    switch.attach(&cp, "cp", &[&format!("{CONTROL_PLANE}/24")])?;
    switch.attach(&rtr, "rtr", &["10.99.0.1/24", &format!("{NET6}1/64")])?;
    switch.attach(&rr, "rr", &[&format!("{RR}/24")])?;
    switch.attach(&cli, "cli", &["10.99.0.100/24", &format!("{NET6}100/64")])?;
    rtr.sysctl(&[
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv4.fib_multipath_hash_policy=1",
    ])?;
    rtr.no_redirects()?;
    cli.no_redirects()?;
    cli.ip(&["route", "add", "default", "via", "10.99.0.1"])?;
    cli.ip(&["-6", "route", "add", "default", "via", &format!("{NET6}1")])?;
    let mut nodes = Vec::new();
    for (name, address) in NODES {
        let node = Netns::create(&ns(name))?;
        let suffix = address.rsplit('.').next().unwrap_or_default();
        switch.attach(
            &node,
            name,
            &[&format!("{address}/24"), &format!("{NET6}{suffix}/64")],
        )?;
        node.sysctl(&["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])?;
        nodes.push(node);
    }

    let router = Frr::start(&rtr, &dir.join("rtr"), &Build::Host)?;
    router.load(ROUTER_CONFIG)?;
    let reflector = Frr::start(&rr, &dir.join("rr"), &Build::Host)?;
    reflector.load(&rr_config())?;
    let address: IpAddr = CONTROL_PLANE.parse()?;
    let kubectl = kubectl(dir);
    let mut controller = None;
    let mut node_frr = Vec::new();
    let mut speakers = Vec::new();
    let mut kubenodes = Vec::new();
    let mut kernel = None;
    let plane = match mode {
        Mode::Processes => {
            let plane = ControlPlane::start(Some(&cp), &dir.join("cp"), address)?;
            kubectl.apply_crds(&paths::repo().join("crds"), Duration::from_secs(60))?;
            let mut base = String::from(
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: metallb-system}\n---\n",
            );
            for (name, address) in NODES {
                base.push_str(&node_manifest(name, address));
            }
            kubectl.apply(&base)?;
            kubectl.apply_repo_file("examples/lab/lab.yaml")?;
            let endpoints: String = ENDPOINTS
                .iter()
                .map(|(name, ready)| endpoints_manifest("shop", name, ready))
                .collect();
            kubectl.apply(&endpoints)?;
            controller = Some(start_controller(&cp, plane.kubeconfig(), dir)?);
            let node_build = Build::frr10()?;
            for ((name, address), node) in NODES.iter().zip(&nodes) {
                let frr = Frr::start(node, &dir.join(name), &node_build)?;
                speakers.push(start_speaker(
                    node,
                    name,
                    address,
                    &frr,
                    plane.kubeconfig(),
                    dir,
                )?);
                node_frr.push(frr);
            }
            plane
        }
        Mode::Pods => {
            kernel = Some(KernelSettings::save()?);
            let images = crate::chart_lab::chart_images(dir)?;
            let plane = ControlPlane::start_with_kubelets(Some(&cp), &dir.join("cp"), address)?;
            kubenodes = pods::start_nodes(dir, &kubectl, &cp, &nodes, &images)?;
            pods::install_chart(dir, &kubectl, &cp)?;
            kubectl.apply_repo_file("examples/lab/lab.yaml")?;
            kubectl.apply(&pods::backends())?;
            pods::wait_backends(&kubectl)?;
            plane
        }
    };

    wait_for(
        "the lab's Services to get IPs",
        Duration::from_secs(30),
        || {
            let services = kubectl.get(&["services", "-n", "shop"])?;
            let all = services["items"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .all(|s| s["status"]["loadBalancer"]["ingress"].is_array())
            });
            Ok(all.then_some(()))
        },
    )?;

    // The routers that are not FRR come up last, to nodes that already run their
    // configuration, as a router that reboots does.
    let other_routers = others::start(&switch, dir)?;

    // Everything stays up; record it so `down` can end it by PID.
    let mut state = LabState::default();
    if let Some(controller) = controller {
        state.replace("controller", controller.keep());
    }
    for ((name, _), node) in NODES.iter().zip(kubenodes) {
        state.nodes.push(pods::NodeRecord {
            name: name.to_string(),
            dir: dir.join(name),
            pids: node.keep(),
        });
    }
    state.kernel = kernel.map(KernelSettings::keep).unwrap_or_default();
    for ((name, _), speaker) in NODES.iter().zip(speakers) {
        state.replace(&format!("speaker-{name}"), speaker.keep());
    }
    for (name, pid) in plane.keep_named() {
        state.replace(name, pid);
    }
    state.pids.extend(router.keep());
    state.pids.extend(reflector.keep());
    let (other_pids, other_namespaces) = other_routers.keep();
    state.pids.extend(other_pids);
    for frr in node_frr {
        state.pids.extend(frr.keep());
    }
    state.namespaces = vec![switch.keep(), cp.keep(), rtr.keep(), rr.keep(), cli.keep()];
    state.namespaces.extend(nodes.into_iter().map(Netns::keep));
    state.namespaces.extend(other_namespaces);
    state.write(dir)?;

    // Converged: every BFD session of the ToR up, and every BGP IP routed there.
    let router = Netns::attach(&ns("rtr"));
    let tor = Frr::client(&dir.join("rtr"), &ns("rtr"));
    let converged = wait_for(
        "BFD and routes on the router",
        Duration::from_secs(30),
        || {
            let peers: Value = serde_json::from_str(&tor.vtysh("show bfd peers json")?)?;
            let sessions = peers.as_array().map_or(&[][..], Vec::as_slice);
            if sessions.len() < NODES.len() || sessions.iter().any(|p| p["status"] != "up") {
                return Ok(None);
            }
            for ip in bgp_ips(dir)? {
                if nexthops(&router, &ip)?.is_empty() {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    );
    if let Err(error) = converged {
        eprintln!("warning: {error:#}");
    }
    let mut out = format!("lab up in {:.1} s\n\n", started.elapsed().as_secs_f64());
    out.push_str(&status(dir)?);
    Ok(out)
}

/// Ends everything `up` started and deletes the lab's namespaces and its directory.
pub fn down(dir: &Path) -> Result<()> {
    let state = LabState::read(dir)?;
    for node in &state.nodes {
        crate::kubenode::stop(&node.name, &node.dir, &node.pids);
    }
    for pid in &state.pids {
        stop_pid(*pid, Duration::from_secs(5));
    }
    // Whatever still runs in the lab's namespaces (a process that forked away from the PID
    // recorded for it) is ended by its PID too, before the namespace goes: left running, it
    // would outlive the lab and reach the next one's FRR through its sockets.
    for name in &state.namespaces {
        if let Ok(pids) = Netns::attach(name).pids() {
            for pid in pids {
                stop_pid(pid, Duration::from_secs(5));
            }
        }
    }
    for name in &state.namespaces {
        let _ = Netns::delete(name);
    }
    crate::kubenode::restore_kernel(&state.kernel);
    // FERROLB_KEEP keeps the logs, as it keeps the tests' scratch directories; the state
    // file goes either way (what it names is gone), so a lab can start there again.
    if std::env::var_os("FERROLB_KEEP").is_none() {
        std::fs::remove_dir_all(dir)?;
    } else {
        std::fs::remove_file(state_file(dir))?;
    }
    Ok(())
}

/// What a user wants to see: Service IPs, the router's routes to them, BFD sessions.
pub fn status(dir: &Path) -> Result<String> {
    if !state_file(dir).exists() {
        bail!("no lab is up (no state in {})", dir.display());
    }
    let mut out = String::new();
    let services = kubectl(dir).get(&["services", "-A"])?;
    let mut bgp_ips = Vec::new();
    writeln!(out, "Services:")?;
    for service in services["items"].as_array().into_iter().flatten() {
        if service["spec"]["type"] != "LoadBalancer" {
            continue;
        }
        let ips: Vec<&str> = service["status"]["loadBalancer"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["ip"].as_str())
            .collect();
        let pool = service["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"]
            .as_str()
            .unwrap_or("-");
        writeln!(
            out,
            "  {}/{}  {}  pool {}  externalTrafficPolicy {}",
            service["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default(),
            service["metadata"]["name"].as_str().unwrap_or_default(),
            if ips.is_empty() {
                "<pending>".to_string()
            } else {
                ips.join(",")
            },
            pool,
            service["spec"]["externalTrafficPolicy"]
                .as_str()
                .unwrap_or("Cluster"),
        )?;
        if BGP_POOLS.contains(&pool) {
            bgp_ips.extend(ips.iter().map(|s| s.to_string()));
        }
    }
    let router = Netns::attach(&ns("rtr"));
    writeln!(out, "\nRouter {} routes (kernel FIB):", ns("rtr"))?;
    for ip in &bgp_ips {
        let family = if ip.contains(':') { "-6" } else { "-4" };
        let route = router.ip(&[family, "route", "show", ip])?;
        let route = route.trim();
        if route.is_empty() {
            writeln!(out, "  {ip}: (no route yet)")?;
        } else {
            for line in route.lines() {
                writeln!(out, "  {}", line.trim())?;
            }
        }
    }
    let frr = Frr::client(&dir.join("rtr"), &ns("rtr"));
    writeln!(out, "\nRouter: show bfd peers brief")?;
    for line in frr.vtysh("show bfd peers brief")?.lines() {
        writeln!(out, "  {line}")?;
    }
    let rr = Frr::client(&dir.join("rr"), &ns("rr"));
    writeln!(
        out,
        "\niBGP router {}: show bgp ipv4 unicast summary",
        ns("rr")
    )?;
    for line in rr.vtysh("show bgp ipv4 unicast summary")?.lines() {
        writeln!(out, "  {line}")?;
    }
    others::status(dir, &mut out)?;
    if !LabState::read(dir)?.nodes.is_empty() {
        out.push_str(&pods::answers(&Netns::attach(&ns("cli")), &services, 3)?);
    }
    Ok(out)
}
