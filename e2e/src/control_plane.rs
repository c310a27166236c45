//! A real control plane of the pinned Kubernetes release (built from Go modules by
//! `hack/k8s.sh`): etcd, kube-apiserver, kube-controller-manager (the controllers a cluster's
//! workloads and Services rely on: EndpointSlices, garbage collection, namespaces, service
//! accounts, Deployments, DaemonSets, ReplicaSets, disruption budgets) and kube-scheduler. TLS
//! with a static token, on ports of their own so several labs can run at once. Writes a
//! kubeconfig for kubectl and ferrolb; refuses to start an API server older than the pin.
//!
//! The node lifecycle controller is off: the nodes of a lab without kubelets send no
//! heartbeats, and would be tainted unreachable.

use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::Netns;
use crate::paths;
use crate::process::{Process, wait_for};

/// The controllers kube-controller-manager runs.
const CONTROLLERS: &str = "endpointslice-controller,endpointslice-mirroring-controller,\
endpoints-controller,garbage-collector-controller,namespace-controller,\
serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,\
deployment-controller,daemonset-controller,replicaset-controller,disruption-controller,\
pod-garbage-collector-controller,ttl-controller";

/// etcd, kube-apiserver, kube-controller-manager, kube-scheduler.
#[derive(Debug)]
pub struct ControlPlane {
    // Field order is drop order: the controllers stop first, then the apiserver, then etcd.
    scheduler: Process,
    controller_manager: Process,
    apiserver: Mutex<Process>,
    etcd: Mutex<Process>,
    kubeconfig: PathBuf,
    // Last: removed once every process above has ended.
    group: Option<CpuGroup>,
}

/// A CPU cgroup of its own (`/sys/fs/cgroup/cpu/<name>`, cgroup v1 as the lab's nodes use),
/// removed when dropped. The control plane of a cluster with real nodes runs in one, so that
/// the CPU scheduler weighs it as one machine beside each node's cgroup, as the machines of a
/// real cluster are apart: left in the root cgroup, each of its busy threads weighs as much
/// as a whole node with all its pods, and a loaded API server starves the nodes' pods.
#[derive(Debug)]
struct CpuGroup(PathBuf);

impl CpuGroup {
    /// The group, when the machine has the cgroup v1 CPU hierarchy.
    fn create(name: &str) -> Result<Option<CpuGroup>> {
        let root = Path::new("/sys/fs/cgroup/cpu");
        if !root.join("cpu.shares").exists() {
            return Ok(None);
        }
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Some(CpuGroup(dir)))
    }

    fn procs(&self) -> PathBuf {
        self.0.join("cgroup.procs")
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        // Its processes are ended by now; the kernel frees their entries a moment later.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A process of the control plane that faults kill and start again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// kube-apiserver.
    ApiServer,
    /// etcd.
    Etcd,
}

fn free_port(address: IpAddr) -> Result<u16> {
    let listener = TcpListener::bind((address, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver listening on `address` (loopback, or an address of the
    /// lab's own network, inside `netns`), then kube-controller-manager and kube-scheduler
    /// beside them, keeping their data, certificates and logs in `dir`. Everything started is
    /// ended again (by the processes' drops) when a step fails.
    pub fn start(netns: Option<&Netns>, dir: &Path, address: IpAddr) -> Result<ControlPlane> {
        ControlPlane::start_with(netns, dir, address, false)
    }

    /// [`ControlPlane::start`] for a cluster whose nodes run kubelets
    /// ([`crate::kubenode`]): kube-controller-manager also runs the node lifecycle
    /// controller, which lifts the `node.kubernetes.io/not-ready` taint a kubelet registers
    /// with once the node is Ready, and taints and evicts when it stops reporting. (Nodes
    /// without kubelets would go Unknown under it.)
    pub fn start_with_kubelets(
        netns: Option<&Netns>,
        dir: &Path,
        address: IpAddr,
    ) -> Result<ControlPlane> {
        ControlPlane::start_with(netns, dir, address, true)
    }

    fn start_with(
        netns: Option<&Netns>,
        dir: &Path,
        address: IpAddr,
        kubelets: bool,
    ) -> Result<ControlPlane> {
        let bin = paths::k8s_bin()?;
        let program = |name: &str| match netns {
            Some(ns) => ns.command(bin.join(name)),
            None => Command::new(bin.join(name)),
        };
        // With real nodes, the control plane weighs as one machine beside them.
        let group = match (kubelets, netns) {
            (true, Some(ns)) => CpuGroup::create(ns.name())?,
            _ => None,
        };
        let into_group = |process: &mut Process| match &group {
            Some(group) => process.move_to_cgroup(&group.procs()),
            None => Ok(()),
        };
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki)?;
        let key = pki.join("sa.key");
        let public = pki.join("sa.pub");
        openssl(&["genrsa", "-out", &key.to_string_lossy(), "2048"])?;
        openssl(&[
            "rsa",
            "-in",
            &key.to_string_lossy(),
            "-pubout",
            "-out",
            &public.to_string_lossy(),
        ])?;
        let token = format!("{:032x}", {
            let mut bytes = [0_u8; 16];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
                .context("reading /dev/urandom")?;
            u128::from_le_bytes(bytes)
        });
        // Kubelets and kube-proxies authenticate with certificates this CA signs
        // ([`client_kubeconfig`]).
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &pki.join("client-ca.key").to_string_lossy(),
            "-out",
            &pki.join("client-ca.crt").to_string_lossy(),
            "-subj",
            "/CN=ferrolb-lab-client-ca",
            "-days",
            "3650",
        ])?;
        std::fs::write(
            pki.join("tokens.csv"),
            format!("{token},admin,admin,system:masters\n"),
        )?;

        // In a namespace of its own the usual ports are free; on the host's loopback, several
        // labs may run at once.
        let (client_port, peer_port, api_port) = if netns.is_some() {
            (2379, 2380, 6443)
        } else {
            (
                free_port(address)?,
                free_port(address)?,
                free_port(address)?,
            )
        };
        let host = match address {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        let mut etcd = program("etcd");
        etcd.arg("--data-dir")
            .arg(dir.join("etcd"))
            .arg("--unsafe-no-fsync")
            .arg(format!("--listen-client-urls=http://{host}:{client_port}"))
            .arg(format!(
                "--advertise-client-urls=http://{host}:{client_port}"
            ))
            .arg(format!("--listen-peer-urls=http://{host}:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://{host}:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://{host}:{peer_port}"
            ));
        let mut etcd = Process::spawn("etcd", etcd, &dir.join("etcd.log"))?;
        into_group(&mut etcd)?;

        let mut apiserver = program("kube-apiserver");
        apiserver
            .arg(format!("--etcd-servers=http://{host}:{client_port}"))
            .arg(format!("--advertise-address={address}"))
            .arg(format!("--bind-address={address}"))
            .arg(format!("--secure-port={api_port}"))
            .arg(format!("--cert-dir={}", pki.display()))
            // Dual-stack, so Services can be IPv6.
            .arg("--service-cluster-ip-range=10.96.0.0/16,fd00:96::/112")
            // LoadBalancer Services take a node port each unless they say otherwise; the
            // default range of 2,768 ports is too few for the 10,000-Service benchmarks.
            .arg("--service-node-port-range=20000-59999")
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!("--service-account-key-file={}", public.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                key.display()
            ))
            .arg(format!(
                "--token-auth-file={}",
                pki.join("tokens.csv").display()
            ))
            .arg(format!(
                "--client-ca-file={}",
                pki.join("client-ca.crt").display()
            ))
            .arg("--authorization-mode=Node,RBAC")
            .arg("--allow-privileged=true")
            // kubectl exec and logs reach kubelets by address, not by a DNS name.
            .arg("--kubelet-preferred-address-types=InternalIP,Hostname");
        if address.is_loopback() {
            // The `kubernetes` Service's endpoint may not be a loopback address.
            apiserver.arg("--endpoint-reconciler-type=none");
        }
        if kubelets {
            // No kube-proxy runs beside the API server: it calls webhooks (the chart's
            // `service` client configuration) at their endpoints' pod addresses, routed to
            // the nodes.
            apiserver.arg("--enable-aggregator-routing=true");
        }
        let mut apiserver =
            Process::spawn("kube-apiserver", apiserver, &dir.join("apiserver.log"))?;
        into_group(&mut apiserver)?;

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://{host}:{api_port}\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: admin}}\ncurrent-context: lab\n",
                ca = pki.join("apiserver.crt").display()
            ),
        )?;
        let kubectl = crate::kubectl::Kubectl::new(&kubeconfig).within(netns.map(Netns::name));
        let ready = wait_for("kube-apiserver /readyz", Duration::from_secs(90), || {
            if !apiserver.running() {
                bail!("kube-apiserver exited:\n{}", apiserver.tail(20));
            }
            Ok(kubectl.run(&["get", "--raw", "/readyz"], None).ok())
        });
        if let Err(error) = ready {
            bail!(
                "{error:#}\napiserver log:\n{}\netcd log:\n{}",
                apiserver.tail(20),
                etcd.tail(10)
            );
        }
        check_version(&kubectl)?;

        let mut controller_manager = program("kube-controller-manager");
        controller_manager
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(if kubelets {
                format!("--controllers={CONTROLLERS},node-lifecycle-controller")
            } else {
                format!("--controllers={CONTROLLERS}")
            })
            .arg(format!(
                "--service-account-private-key-file={}",
                key.display()
            ))
            .arg(format!(
                "--root-ca-file={}",
                pki.join("apiserver.crt").display()
            ))
            .arg("--leader-elect=false")
            .arg("--secure-port=0");
        let mut controller_manager = Process::spawn(
            "kube-controller-manager",
            controller_manager,
            &dir.join("controller-manager.log"),
        )?;
        into_group(&mut controller_manager)?;
        let mut scheduler = program("kube-scheduler");
        scheduler
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--leader-elect=false")
            .arg("--secure-port=0");
        let mut scheduler =
            Process::spawn("kube-scheduler", scheduler, &dir.join("scheduler.log"))?;
        into_group(&mut scheduler)?;
        let plane = ControlPlane {
            scheduler,
            controller_manager,
            apiserver: Mutex::new(apiserver),
            etcd: Mutex::new(etcd),
            kubeconfig,
            group,
        };
        // The service-account controller makes `default` in every namespace: the sign that
        // kube-controller-manager runs and reaches the API server.
        wait_for(
            "kube-controller-manager (ServiceAccount default/default)",
            Duration::from_secs(60),
            || {
                Ok(kubectl
                    .run(&["get", "serviceaccount", "default", "-n", "default"], None)
                    .ok())
            },
        )
        .with_context(|| {
            format!(
                "controller-manager log:\n{}",
                plane.controller_manager.tail(20)
            )
        })?;
        Ok(plane)
    }

    /// Leaves the control plane running beyond this object; returns its PIDs.
    pub fn keep(self) -> Vec<u32> {
        let ControlPlane {
            scheduler,
            controller_manager,
            apiserver,
            etcd,
            group,
            ..
        } = self;
        // The processes stay, and the cgroup that holds them.
        std::mem::forget(group);
        let inner = |process: Mutex<Process>| {
            process
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        vec![
            scheduler.keep(),
            controller_manager.keep(),
            inner(apiserver).keep(),
            inner(etcd).keep(),
        ]
    }

    fn component(&self, which: Component) -> std::sync::MutexGuard<'_, Process> {
        match which {
            Component::ApiServer => &self.apiserver,
            Component::Etcd => &self.etcd,
        }
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// SIGKILLs `which` (a crash, as the rest of the cluster sees it).
    pub fn kill(&self, which: Component) -> Result<()> {
        self.component(which).kill()?;
        Ok(())
    }

    /// Starts `which` again after [`ControlPlane::kill`], as it was started (its data stays:
    /// etcd's directory, the API server's certificates).
    pub fn start_again(&self, which: Component) -> Result<()> {
        self.component(which).start_again()
    }

    /// [`ControlPlane::keep`], with each PID's program: `kube-scheduler`,
    /// `kube-controller-manager`, `kube-apiserver`, `etcd`.
    pub fn keep_named(self) -> Vec<(&'static str, u32)> {
        let names = [
            "kube-scheduler",
            "kube-controller-manager",
            "kube-apiserver",
            "etcd",
        ];
        names.into_iter().zip(self.keep()).collect()
    }

    /// The kubeconfig to reach it.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
}

/// Writes a kubeconfig at `out` for `user` in `group` (a node: `system:node:NAME` in
/// `system:nodes`; kube-proxy: `system:kube-proxy`) on the control plane whose directory is
/// `dir`: a key and a certificate signed by its client CA, and the admin kubeconfig's server.
pub fn client_kubeconfig(dir: &Path, user: &str, group: Option<&str>, out: &Path) -> Result<()> {
    let pki = dir.join("pki");
    let stem = out.with_extension("");
    let key = stem.with_extension("key");
    let csr = stem.with_extension("csr");
    let cert = stem.with_extension("crt");
    let subject = match group {
        Some(group) => format!("/O={group}/CN={user}"),
        None => format!("/CN={user}"),
    };
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &key.to_string_lossy(),
        "-out",
        &csr.to_string_lossy(),
        "-subj",
        &subject,
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr.to_string_lossy(),
        "-CA",
        &pki.join("client-ca.crt").to_string_lossy(),
        "-CAkey",
        &pki.join("client-ca.key").to_string_lossy(),
        "-CAcreateserial",
        "-out",
        &cert.to_string_lossy(),
        "-days",
        "3650",
    ])?;
    let admin = std::fs::read_to_string(dir.join("kubeconfig"))
        .with_context(|| format!("reading {}/kubeconfig", dir.display()))?;
    let cluster: String = admin
        .lines()
        .skip_while(|l| !l.starts_with("clusters:"))
        .take_while(|l| !l.starts_with("users:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        out,
        format!(
            "apiVersion: v1\nkind: Config\n{cluster}users:\n- name: {user}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: {user}}}\ncurrent-context: lab\n",
            cert = cert.display(),
            key = key.display(),
        ),
    )
    .with_context(|| format!("writing {}", out.display()))
}

/// Refuses an API server older than the version `hack/tools` pins (a stale binary directory
/// named by `FERROLB_K8S_DIR`, say).
fn check_version(kubectl: &crate::kubectl::Kubectl) -> Result<()> {
    let pinned = paths::k8s_version()?;
    let version: serde_json::Value =
        serde_json::from_str(&kubectl.run(&["get", "--raw", "/version"], None)?)
            .context("the API server's /version is not JSON")?;
    let served = version["gitVersion"].as_str().unwrap_or_default();
    if release(served) < release(&pinned) {
        bail!("the API server is Kubernetes {served:?}, older than the pinned {pinned}");
    }
    Ok(())
}

/// `v1.37.2` → (1, 37, 2); anything unreadable sorts first.
fn release(version: &str) -> (u32, u32, u32) {
    let mut parts = version
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::release;

    #[test]
    fn releases_compare_by_number_not_by_text() {
        assert!(release("v1.9.0") < release("v1.37.2"));
        assert!(release("v1.37.10") > release("v1.37.2"));
        assert!(release("v0.0.0-master+$Format:%H$") < release("v1.20.0"));
        assert_eq!(release("v1.37.2"), (1, 37, 2));
    }
}
