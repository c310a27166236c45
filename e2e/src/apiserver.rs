//! A real control plane: etcd and kube-apiserver (Kubernetes 1.20, built from Debian's
//! source package by `hack/apiserver.sh`), TLS with a static token, on ports of their own so
//! several labs can run at once. Writes a kubeconfig for kubectl and ferrolb.

use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::Netns;
use crate::paths;
use crate::process::{Process, wait_for};

/// etcd + kube-apiserver.
#[derive(Debug)]
pub struct ControlPlane {
    // Field order is drop order: the apiserver stops before etcd.
    apiserver: Process,
    etcd: Process,
    kubeconfig: PathBuf,
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
    /// lab's own network, inside `netns`), keeping their data, certificates and logs in `dir`.
    pub fn start(netns: Option<&Netns>, dir: &Path, address: IpAddr) -> Result<ControlPlane> {
        let bin = paths::apiserver_bin()?;
        let program = |name: &str| match netns {
            Some(ns) => ns.command(bin.join(name)),
            None => Command::new(bin.join(name)),
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
        let etcd = Process::spawn("etcd", etcd, &dir.join("etcd.log"))?;

        let mut apiserver = program("kube-apiserver");
        apiserver
            .arg(format!("--etcd-servers=http://{host}:{client_port}"))
            .arg(format!("--advertise-address={address}"))
            .arg(format!("--bind-address={address}"))
            .arg(format!("--secure-port={api_port}"))
            .arg(format!("--cert-dir={}", pki.display()))
            // Dual-stack (alpha in 1.20), so Services can be IPv6.
            .arg("--feature-gates=IPv6DualStack=true")
            .arg("--service-cluster-ip-range=10.96.0.0/16,fd00:96::/112")
            // LoadBalancer Services take a node port each (1.20 cannot turn that off); the
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
            .arg("--authorization-mode=RBAC")
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--allow-privileged=true");
        let apiserver = Process::spawn("kube-apiserver", apiserver, &dir.join("apiserver.log"))?;

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://{host}:{api_port}\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: admin}}\ncurrent-context: lab\n",
                ca = pki.join("apiserver.crt").display()
            ),
        )?;
        let mut plane = ControlPlane {
            apiserver,
            etcd,
            kubeconfig,
        };
        let kubectl =
            crate::kubectl::Kubectl::new(&plane.kubeconfig).within(netns.map(Netns::name));
        let ready = wait_for("kube-apiserver /readyz", Duration::from_secs(60), || {
            if !plane.apiserver.running() {
                bail!("kube-apiserver exited:\n{}", plane.apiserver.tail(20));
            }
            Ok(kubectl.run(&["get", "--raw", "/readyz"], None).ok())
        });
        if let Err(error) = ready {
            bail!(
                "{error:#}\napiserver log:\n{}\netcd log:\n{}",
                plane.apiserver.tail(20),
                plane.etcd.tail(10)
            );
        }
        Ok(plane)
    }

    /// Leaves etcd and the apiserver running beyond this object; returns their PIDs.
    pub fn keep(self) -> Vec<u32> {
        let ControlPlane {
            apiserver, etcd, ..
        } = self;
        vec![apiserver.keep(), etcd.keep()]
    }

    /// The kubeconfig to reach it.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
}
