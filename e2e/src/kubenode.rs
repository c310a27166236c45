//! A lab namespace made a real Kubernetes node: its own containerd, kubelet and kube-proxy
//! (nftables mode), with pods wired by the CNI bridge and host-local plugins from a pod CIDR
//! of its own. Several nodes share one machine, so everything is the node's own: state
//! directories, sockets, runc's root, the CNI configuration and address store, log
//! directories and a cgroup parent (`/<name>` in every hierarchy).
//!
//! containerd runs in a mount namespace of its own (`ip netns exec` mounts a fresh `/sys`,
//! which leaves `/sys/fs/cgroup` empty) where the cgroup hierarchies are mounted again and
//! `/var/log/pods` and `/var/log/containers` are the node's; kubelet and kube-proxy enter that
//! mount and network namespace. The machine is cgroup v1, which kubelet 1.35 and later accept
//! only with `failCgroupV1: false`; its processes lack CAP_SYS_RESOURCE, so containerd must
//! not raise a container's OOM score (`restrict_oom_score_adj`).
//!
//! Stopping a node ends kube-proxy and kubelet, deletes the containers through containerd,
//! ends whatever is left in the node's cgroups and the runc shims that name the node's
//! containerd socket, then containerd, and removes the node's cgroups.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::control_plane::client_kubeconfig;
use crate::image;
use crate::netns::Netns;
use crate::paths;
use crate::process::{Process, stop_pid, wait_for};

/// The cgroup v1 hierarchies containerd and kubelet need, as mounted on the machine.
const CONTROLLERS: [&str; 8] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
];

/// The pods of all nodes: each node's pod CIDR is a /24 in it.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// The IPv6 pods of all nodes, for dual-stack nodes: each node's pod CIDR is a /64 in it.
pub const CLUSTER_CIDR6: &str = "fd44::/48";

/// What makes one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Its name (the Node object's).
    pub name: String,
    /// Its address on the lab network.
    pub address: String,
    /// Its IPv6 address on the lab network, for a dual-stack node.
    pub address6: Option<String>,
    /// Its pods' addresses, e.g. `10.244.1.0/24`.
    pub pod_cidr: String,
    /// Its pods' IPv6 addresses, for a dual-stack node.
    pub pod_cidr6: Option<String>,
    /// Its default gateway (a ClusterIP is routed before kube-proxy translates it).
    pub gateway: String,
    /// The other nodes' pod CIDRs and their addresses.
    pub routes: Vec<(String, String)>,
}

fn lock(process: &std::sync::Mutex<Process>) -> std::sync::MutexGuard<'_, Process> {
    process
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running node.
#[derive(Debug)]
pub struct KubeNode {
    name: String,
    dir: PathBuf,
    proxy: Option<Process>,
    kubelet: Option<std::sync::Mutex<Process>>,
    containerd: Option<Process>,
}

/// The binary directory of the node runtime (containerd, its shim, ctr):
/// `FERROLB_CONTAINERD_DIR`, else what `hack/k8s.sh build-node` prints.
pub fn runtime_bin() -> Result<PathBuf> {
    paths::built_with("k8s.sh", "build-node", "FERROLB_CONTAINERD_DIR")
}

fn containerd_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 3
root = "{d}/containerd/root"
state = "{d}/containerd/state"

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins.'io.containerd.internal.v1.opt']
  path = "{d}/containerd/opt"

[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{pause}"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
        BinaryName = "/usr/sbin/runc"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{d}/cni/net.d"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  netns_mounts_under_state_dir = true
"#,
        pause = image::PAUSE,
    )
}

fn cni_config(dir: &Path, spec: &NodeSpec) -> String {
    let mut ranges = vec![serde_json::json!([{"subnet": spec.pod_cidr}])];
    let mut routes = vec![serde_json::json!({"dst": "0.0.0.0/0"})];
    if let Some(v6) = &spec.pod_cidr6 {
        ranges.push(serde_json::json!([{"subnet": v6}]));
        routes.push(serde_json::json!({"dst": "::/0"}));
    }
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": dir.join("cni/data"),
                    "ranges": ranges,
                    "routes": routes,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    })
    .to_string()
}

fn kubelet_config(spec: &NodeSpec, dir: &Path) -> String {
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /{name}
failCgroupV1: false
failSwapOn: false
podCIDR: {cidr}
address: {address}
readOnlyPort: 0
authentication:
  anonymous: {{enabled: true}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
resolvConf: \"\"
serializeImagePulls: false
containerRuntimeEndpoint: unix://{sock}
evictionHard: {{memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
enforceNodeAllocatable: []
makeIPTablesUtilChains: false
",
        name = spec.name,
        cidr = spec.pod_cidr,
        address = spec.address,
        sock = dir.join("containerd.sock").display(),
    )
}

fn proxy_config(spec: &NodeSpec, kubeconfig: &Path) -> String {
    format!(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {{kubeconfig: {kubeconfig}}}
hostnameOverride: {name}
clusterCIDR: {cluster_cidr}
conntrack: {{maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
",
        kubeconfig = kubeconfig.display(),
        name = spec.name,
        cluster_cidr = if spec.pod_cidr6.is_some() {
            format!("{CLUSTER_CIDR},{CLUSTER_CIDR6}")
        } else {
            CLUSTER_CIDR.to_string()
        },
    )
}

/// The shell run in the node's mount namespace before it becomes containerd.
fn containerd_script(dir: &Path, bin: &Path) -> String {
    let mut script = String::from("set -e\nmount -t tmpfs cgroup /sys/fs/cgroup\n");
    for controller in CONTROLLERS {
        script.push_str(&format!(
            "mkdir /sys/fs/cgroup/{controller}\nmount -t cgroup -o {controller} cgroup /sys/fs/cgroup/{controller}\n"
        ));
    }
    script.push_str(
        "mkdir /sys/fs/cgroup/systemd\nmount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd\n\
         mkdir /sys/fs/cgroup/unified\nmount -t cgroup2 cgroup2 /sys/fs/cgroup/unified\n\
         mkdir -p /var/log/pods /var/log/containers\n",
    );
    for logs in ["pods", "containers"] {
        script.push_str(&format!(
            "mount --bind {} /var/log/{logs}\n",
            dir.join("log").join(logs).display()
        ));
    }
    script.push_str(&format!(
        "exec {} --config {}\n",
        bin.join("containerd").display(),
        dir.join("containerd.toml").display()
    ));
    script
}

/// The cgroup `/<name>` in every hierarchy of the machine, deepest last: the v1 ones, and
/// the v2 one a hybrid machine mounts at `/sys/fs/cgroup/unified` (runc makes the node's
/// cgroups there too; left behind, each run of a node left empty ones).
fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let unified = root.join("unified").is_dir().then_some("unified");
    CONTROLLERS
        .iter()
        .copied()
        .chain(["systemd"])
        .chain(unified)
        .map(|c| root.join(c).join(name))
        .collect()
}

impl KubeNode {
    /// Starts the node's containerd, imports the pause image and `images` (OCI archives),
    /// and starts kubelet and kube-proxy with credentials from the control plane in
    /// `control_plane_dir`. The node registers itself; wait for it with [`wait_ready`].
    pub fn start(
        netns: &Netns,
        spec: &NodeSpec,
        dir: &Path,
        control_plane_dir: &Path,
        images: &[&Path],
    ) -> Result<KubeNode> {
        let bin = runtime_bin()?;
        let k8s = paths::k8s_bin()?;
        for sub in [
            "containerd",
            "runc",
            "cni/net.d",
            "cni/data",
            "kubelet/pki",
            "log/pods",
            "log/containers",
            "pki",
        ] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::write(dir.join("containerd.toml"), containerd_config(dir))?;
        std::fs::write(dir.join("cni/net.d/10-lab.conflist"), cni_config(dir, spec))?;
        for cgroup in cgroup_dirs(&spec.name) {
            std::fs::create_dir_all(&cgroup)
                .with_context(|| format!("creating {}", cgroup.display()))?;
        }
        let cpuset = Path::new("/sys/fs/cgroup/cpuset");
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let value = std::fs::read_to_string(cpuset.join(file))?;
            std::fs::write(cpuset.join(&spec.name).join(file), value.trim())?;
        }
        netns.ip(&["route", "replace", "default", "via", &spec.gateway])?;
        for (cidr, via) in &spec.routes {
            netns.ip(&["route", "replace", cidr, "via", via])?;
        }

        let mut node = KubeNode {
            name: spec.name.clone(),
            dir: dir.to_path_buf(),
            proxy: None,
            kubelet: None,
            containerd: None,
        };
        let mut containerd = netns.command("unshare");
        containerd
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(containerd_script(dir, &bin));
        let mut containerd = Process::spawn("containerd", containerd, &dir.join("containerd.log"))?;
        let socket = dir.join("containerd.sock");
        wait_for(
            &format!("containerd of {}", spec.name),
            Duration::from_secs(30),
            || {
                if !containerd.running() {
                    bail!("containerd exited:\n{}", containerd.tail(20));
                }
                Ok(ctr(&bin, &socket, &["version"]).ok())
            },
        )?;
        let pid = containerd.pid();
        node.containerd = Some(containerd);

        let pause = dir.join("pause.tar");
        image::pause().write(&pause)?;
        for archive in std::iter::once(pause.as_path()).chain(images.iter().copied()) {
            ctr(
                &bin,
                &socket,
                &[
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    &archive.to_string_lossy(),
                ],
            )?;
        }

        let kubelet_kubeconfig = dir.join("pki/kubelet.kubeconfig");
        client_kubeconfig(
            control_plane_dir,
            &format!("system:node:{}", spec.name),
            Some("system:nodes"),
            &kubelet_kubeconfig,
        )?;
        let proxy_kubeconfig = dir.join("pki/kube-proxy.kubeconfig");
        client_kubeconfig(
            control_plane_dir,
            "system:kube-proxy",
            None,
            &proxy_kubeconfig,
        )?;
        std::fs::write(dir.join("kubelet.yaml"), kubelet_config(spec, dir))?;
        std::fs::write(
            dir.join("kube-proxy.yaml"),
            proxy_config(spec, &proxy_kubeconfig),
        )?;
        let enter = |program: &str| {
            let mut command = Command::new("nsenter");
            command
                .args(["-t", &pid.to_string(), "-m", "-n"])
                .arg(k8s.join(program));
            command
        };
        let mut kubelet = enter("kubelet");
        kubelet
            .arg(format!("--config={}", dir.join("kubelet.yaml").display()))
            .arg(format!("--kubeconfig={}", kubelet_kubeconfig.display()))
            .arg(format!("--root-dir={}", dir.join("kubelet").display()))
            .arg(format!("--cert-dir={}", dir.join("kubelet/pki").display()))
            .arg(format!("--hostname-override={}", spec.name))
            .arg(format!(
                "--node-ip={}",
                std::iter::once(&spec.address)
                    .chain(&spec.address6)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            ))
            .arg("--oom-score-adj=0");
        node.kubelet = Some(std::sync::Mutex::new(Process::spawn(
            "kubelet",
            kubelet,
            &dir.join("kubelet.log"),
        )?));
        let mut proxy = enter("kube-proxy");
        proxy
            .arg(format!(
                "--config={}",
                dir.join("kube-proxy.yaml").display()
            ))
            .arg("--oom-score-adj=0");
        node.proxy = Some(Process::spawn(
            "kube-proxy",
            proxy,
            &dir.join("kube-proxy.log"),
        )?);
        Ok(node)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last lines of kubelet's log.
    pub fn kubelet_tail(&self, lines: usize) -> String {
        self.kubelet
            .as_ref()
            .map(|k| lock(k).tail(lines))
            .unwrap_or_default()
    }

    /// SIGKILLs kubelet (its pods go on running: their containers are containerd's).
    pub fn kill_kubelet(&self) -> Result<()> {
        if let Some(kubelet) = &self.kubelet {
            lock(kubelet).kill()?;
        }
        Ok(())
    }

    /// Starts kubelet again after [`KubeNode::kill_kubelet`], as it was started.
    pub fn start_kubelet_again(&self) -> Result<()> {
        match &self.kubelet {
            Some(kubelet) => lock(kubelet).start_again(),
            None => bail!("{} has no kubelet", self.name),
        }
    }

    /// Leaves the node running beyond this object (for a lab that stays up); returns the
    /// PIDs of kube-proxy, kubelet and containerd, in the order to stop them with [`stop`].
    pub fn keep(mut self) -> Vec<u32> {
        let pids = [
            self.proxy.take(),
            self.kubelet.take().map(|k| {
                k.into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            }),
            self.containerd.take(),
        ]
        .into_iter()
        .flatten()
        .map(Process::keep)
        .collect();
        self.name.clear();
        pids
    }
}

impl Drop for KubeNode {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        let kubelet = self.kubelet.as_mut().map(|k| {
            k.get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        });
        let mut processes: Vec<&mut Process> =
            [self.proxy.as_mut(), kubelet, self.containerd.as_mut()]
                .into_iter()
                .flatten()
                .collect();
        let pids: Vec<u32> = processes.iter().map(|p| p.pid()).collect();
        stop(&self.name, &self.dir, &pids);
        // The processes are gone; reap them.
        for process in &mut processes {
            let _ = process.kill();
        }
    }
}

fn ctr(bin: &Path, socket: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin.join("ctr"))
        .arg("-a")
        .arg(socket)
        .args(args)
        .output()
        .context("running ctr")?;
    if !out.status.success() {
        bail!(
            "ctr {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every PID in `cgroup` and the cgroups below it.
fn cgroup_pids(cgroup: &Path, out: &mut Vec<u32>) {
    if let Ok(text) = std::fs::read_to_string(cgroup.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(cgroup) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                cgroup_pids(&entry.path(), out);
            }
        }
    }
}

/// Removes `cgroup` and the cgroups below it, deepest first; false if one stays.
fn remove_cgroup(cgroup: &Path) -> bool {
    let mut clean = true;
    if let Ok(entries) = std::fs::read_dir(cgroup) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                clean &= remove_cgroup(&entry.path());
            }
        }
    }
    clean && (std::fs::remove_dir(cgroup).is_ok() || !cgroup.exists())
}

/// The PIDs of the runc shims containerd started for the node: processes whose command
/// line names the node's own containerd socket (a path no other node shares).
fn shim_pids(dir: &Path) -> Vec<u32> {
    let socket = dir.join("containerd.sock");
    let socket = socket.to_string_lossy();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
            let shim = args
                .next()
                .is_some_and(|program| program.ends_with("containerd-shim-runc-v2"));
            let ours = args.any(|arg| arg == socket);
            (shim && ours).then_some(pid)
        })
        .collect()
}

/// Stops a node: `pids` (kube-proxy, kubelet, containerd, as [`KubeNode::keep`] returned
/// them) and everything they left: the pods' processes, the shims, the node's cgroups.
pub fn stop(name: &str, dir: &Path, pids: &[u32]) {
    let (daemons, runtime) = pids.split_at(pids.len().saturating_sub(1));
    for pid in daemons {
        stop_pid(*pid, Duration::from_secs(10));
    }
    // Containers killed and deleted through containerd, so that their shims exit.
    if let Ok(bin) = runtime_bin() {
        let socket = dir.join("containerd.sock");
        if let Ok(tasks) = ctr(&bin, &socket, &["-n", "k8s.io", "tasks", "ls", "-q"]) {
            let ids: Vec<&str> = tasks.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["-n", "k8s.io", "tasks", "delete", "-f"];
                args.extend(&ids);
                let _ = ctr(&bin, &socket, &args);
            }
        }
    }
    let pids_cgroup = Path::new("/sys/fs/cgroup/pids").join(name);
    for _ in 0..50 {
        let mut pods = Vec::new();
        cgroup_pids(&pids_cgroup, &mut pods);
        if pods.is_empty() {
            break;
        }
        for pid in pods {
            if let Ok(raw) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(raw),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for shim in shim_pids(dir) {
        stop_pid(shim, Duration::from_secs(2));
    }
    for pid in runtime {
        stop_pid(*pid, Duration::from_secs(10));
    }
    for cgroup in cgroup_dirs(name) {
        for _ in 0..50 {
            if remove_cgroup(&cgroup) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Machine-wide settings kubelet changes (it sets what it needs for memory overcommit and
/// panics); read before the first node starts and written back when this is dropped, after
/// the last node stopped.
#[derive(Debug)]
pub struct KernelSettings(Vec<(PathBuf, String)>);

impl Drop for KernelSettings {
    fn drop(&mut self) {
        self.restore();
    }
}

impl KernelSettings {
    /// Reads the settings kubelet changes.
    pub fn save() -> Result<KernelSettings> {
        let mut saved = Vec::new();
        for key in [
            "vm/overcommit_memory",
            "vm/panic_on_oom",
            "kernel/panic",
            "kernel/panic_on_oops",
        ] {
            let path = Path::new("/proc/sys").join(key);
            let value = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            saved.push((path, value));
        }
        Ok(KernelSettings(saved))
    }

    /// Writes them back.
    pub fn restore(&self) {
        restore_kernel(&self.0);
    }

    /// Leaves them as kubelet sets them beyond this object (for a lab that stays up);
    /// returns what to write back with [`restore_kernel`].
    pub fn keep(mut self) -> Vec<(PathBuf, String)> {
        std::mem::take(&mut self.0)
    }
}

/// Writes back kernel settings [`KernelSettings::keep`] returned.
pub fn restore_kernel(saved: &[(PathBuf, String)]) {
    for (path, value) in saved {
        let _ = std::fs::write(path, value);
    }
}

/// Waits until every node in `names` is Ready.
pub fn wait_ready(
    kubectl: &crate::kubectl::Kubectl,
    names: &[&str],
    timeout: Duration,
) -> Result<()> {
    wait_for("the nodes to be Ready", timeout, || {
        let nodes = kubectl.get(&["nodes"])?;
        let ready = |name: &str| {
            nodes["items"].as_array().is_some_and(|items| {
                items.iter().any(|node| {
                    node["metadata"]["name"] == name
                        && node["status"]["conditions"]
                            .as_array()
                            .is_some_and(|conditions| {
                                conditions
                                    .iter()
                                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
                            })
                })
            })
        };
        Ok(names.iter().all(|name| ready(name)).then_some(()))
    })
}

/// A cluster of real nodes on a switch of its own: the control plane in one namespace, two
/// nodes in theirs, on `<subnet>.0/24` (control plane `.2`, nodes `.11` and `.12`). Drops
/// in order: nodes, control plane, namespaces, then the kernel settings are written back.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<KubeNode>,
    plane: crate::control_plane::ControlPlane,
    kubectl: crate::kubectl::Kubectl,
    names: Vec<String>,
    addresses: Vec<String>,
    node_namespaces: Vec<Netns>,
    control_plane: Netns,
    switch: crate::netns::Switch,
    _kernel: KernelSettings,
}

impl Cluster {
    /// Starts it: namespaces `<prefix>-sw`, `-cp`, `-n1`, `-n2` (the nodes' names), files in
    /// `dir`, `images` (OCI archives) imported into each node; returns once both are Ready.
    pub fn start(prefix: &str, subnet: &str, dir: &Path, images: &[&Path]) -> Result<Cluster> {
        let kernel = KernelSettings::save()?;
        let switch = crate::netns::Switch::create(&format!("{prefix}-sw"))?;
        let control_plane = Netns::create(&format!("{prefix}-cp"))?;
        let cp_address = format!("{subnet}.2");
        switch.attach(&control_plane, "cp", &[&format!("{cp_address}/24")])?;
        let names: Vec<String> = ["n1", "n2"].map(|n| format!("{prefix}-{n}")).to_vec();
        let addresses = [format!("{subnet}.11"), format!("{subnet}.12")];
        let cidrs = ["10.244.1.0/24", "10.244.2.0/24"];
        let mut node_namespaces = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let ns = Netns::create(name)?;
            switch.attach(
                &ns,
                &format!("n{}", i + 1),
                &[&format!("{}/24", addresses[i])],
            )?;
            node_namespaces.push(ns);
        }
        // The API server reaches pods (webhooks) by the nodes' pod routes.
        for (cidr, address) in cidrs.iter().zip(&addresses) {
            control_plane.ip(&["route", "replace", cidr, "via", address])?;
        }
        let cp_dir = dir.join("cp");
        let plane = crate::control_plane::ControlPlane::start_with_kubelets(
            Some(&control_plane),
            &cp_dir,
            cp_address.parse()?,
        )?;
        let kubectl =
            crate::kubectl::Kubectl::new(plane.kubeconfig()).within(Some(control_plane.name()));
        let mut nodes = Vec::new();
        for (i, ns) in node_namespaces.iter().enumerate() {
            let other = 1 - i;
            let spec = NodeSpec {
                name: names[i].clone(),
                address: addresses[i].clone(),
                address6: None,
                pod_cidr: cidrs[i].into(),
                pod_cidr6: None,
                gateway: cp_address.clone(),
                routes: vec![(cidrs[other].into(), addresses[other].clone())],
            };
            nodes.push(KubeNode::start(
                ns,
                &spec,
                &dir.join(&names[i]),
                &cp_dir,
                images,
            )?);
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        if let Err(error) = wait_ready(&kubectl, &refs, Duration::from_secs(90)) {
            bail!("{error:#}\nkubelet log:\n{}", nodes[0].kubelet_tail(30));
        }
        Ok(Cluster {
            nodes,
            plane,
            kubectl,
            names,
            addresses: addresses.to_vec(),
            node_namespaces,
            control_plane,
            switch,
            _kernel: kernel,
        })
    }

    /// kubectl against it (run in the control plane's namespace).
    pub fn kubectl(&self) -> &crate::kubectl::Kubectl {
        &self.kubectl
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        self.plane.kubeconfig()
    }

    /// The nodes, in order.
    pub fn nodes(&self) -> &[KubeNode] {
        &self.nodes
    }

    /// The control plane's processes (to kill and start again).
    pub fn plane(&self) -> &crate::control_plane::ControlPlane {
        &self.plane
    }

    /// The control plane's namespace (where the API server is reachable).
    pub fn control_plane(&self) -> &Netns {
        &self.control_plane
    }

    /// The nodes' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The nodes' addresses on the switch, in node order.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// The nodes' namespaces.
    pub fn node_namespaces(&self) -> &[Netns] {
        &self.node_namespaces
    }

    /// The switch, to plug more namespaces in (a client, a router).
    pub fn switch(&self) -> &crate::netns::Switch {
        &self.switch
    }

    /// Stops the nodes now (the rest goes on drop).
    pub fn stop_nodes(&mut self) {
        self.nodes.clear();
    }
}
