//! Network namespaces and the lab switch. Every interface is created inside a namespace the
//! lab owns (veth pairs are made between namespaces directly), so the default namespace is
//! never touched. A namespace is deleted when its [`Netns`] is dropped.

use std::process::Command;

use anyhow::{Context, Result, bail};

fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace of the lab.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// Deleted on drop (created here, not attached to).
    owned: bool,
}

impl Netns {
    /// Creates namespace `name` with `lo` up (a leftover of the same name is replaced).
    pub fn create(name: &str) -> Result<Netns> {
        let _ = ip(&["netns", "del", name]);
        ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A handle on an existing namespace, which its drop leaves in place.
    pub fn attach(name: &str) -> Netns {
        Netns {
            name: name.to_string(),
            owned: false,
        }
    }

    /// Leaves the namespace in place beyond this object (for a lab that stays up).
    pub fn keep(mut self) -> String {
        self.owned = false;
        self.name.clone()
    }

    /// Whether a namespace of that name exists.
    pub fn exists(name: &str) -> bool {
        std::path::Path::new("/run/netns").join(name).exists()
    }

    /// Deletes a namespace left in place by [`Netns::keep`].
    pub fn delete(name: &str) -> Result<()> {
        ip(&["netns", "del", name]).map(drop)
    }

    /// The PIDs of the processes in it (`ip netns pids`).
    pub fn pids(&self) -> Result<Vec<u32>> {
        let out = ip(&["netns", "pids", &self.name])?;
        Ok(out
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `work` on a thread of its own inside the namespace (sockets it opens live
    /// there; the file system view stays the caller's).
    pub fn in_thread<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
            nix::sched::setns(
                std::os::fd::AsFd::as_fd(&file),
                nix::sched::CloneFlags::CLONE_NEWNET,
            )
            .with_context(|| format!("entering {path}"))?;
            work()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in {} panicked", self.name))?
    }

    /// Runs `program ARGS` inside the namespace; returns stdout, or an error with stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program} in {}", self.name))?;
        if !out.status.success() {
            bail!(
                "{program} {} in {}: {}",
                args.join(" "),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sets sysctls (`key=value` each) inside the namespace.
    pub fn sysctl(&self, settings: &[&str]) -> Result<()> {
        let mut args = vec!["-qw"];
        args.extend_from_slice(settings);
        self.run("sysctl", &args).map(drop)
    }

    /// Neither sends nor takes ICMP redirects on `eth0` (and interfaces made later). A
    /// router and a client on the nodes' segment need this: a router forwarding the client's
    /// packet back out of the interface it came in on tells the client to go to the next hop
    /// straight, and the client would then send everything to one node, past the router's
    /// ECMP and its withdrawals.
    pub fn no_redirects(&self) -> Result<()> {
        let mut settings = Vec::new();
        for scope in ["all", "default", "eth0"] {
            settings.push(format!("net.ipv4.conf.{scope}.send_redirects=0"));
            settings.push(format!("net.ipv4.conf.{scope}.accept_redirects=0"));
            settings.push(format!("net.ipv6.conf.{scope}.accept_redirects=0"));
        }
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        self.sysctl(&settings)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned {
            let _ = ip(&["netns", "del", &self.name]);
        }
    }
}

/// A switch: a bridge in a namespace of its own, one port per attached namespace.
#[derive(Debug)]
pub struct Switch {
    ns: Netns,
}

impl Switch {
    /// Creates the switch's namespace and bridge (no STP, no forwarding delay).
    pub fn create(name: &str) -> Result<Switch> {
        let ns = Netns::create(name)?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&[
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Switch { ns })
    }

    /// Plugs `host` in: port `port` on the bridge, `eth0` in `host` with `addresses`
    /// (CIDR notation; IPv6 ones without duplicate address detection).
    pub fn attach(&self, host: &Netns, port: &str, addresses: &[&str]) -> Result<()> {
        self.ns.ip(&[
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            host.name(),
        ])?;
        self.ns.ip(&["link", "set", port, "master", "br0"])?;
        self.ns.ip(&["link", "set", port, "up"])?;
        host.sysctl(&[
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.eth0.accept_dad=0",
        ])?;
        for address in addresses {
            if address.contains(':') {
                host.ip(&["addr", "add", address, "dev", "eth0", "nodad"])?;
            } else {
                host.ip(&["addr", "add", address, "dev", "eth0"])?;
            }
        }
        host.ip(&["link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// A handle on a switch created elsewhere (a lab that is up); it stays on drop.
    pub fn existing(name: &str) -> Switch {
        Switch {
            ns: Netns::attach(name),
        }
    }

    /// Leaves the switch in place; returns its namespace's name.
    pub fn keep(self) -> String {
        self.ns.keep()
    }

    /// Sets a port up or down (down is a hard failure of what is behind it: its own
    /// interface stays up, so peers notice only through BFD or hold timers).
    pub fn set_port(&self, port: &str, up: bool) -> Result<()> {
        self.ns
            .ip(&["link", "set", port, if up { "up" } else { "down" }])
            .map(drop)
    }
}
