//! A hermetic FRR instance (Debian's FRR 8.4) in a namespace: zebra, staticd, bfdd and bgpd
//! run as children of the harness, with every socket, pid file and log under the instance's
//! own directory, so many instances run side by side and nothing touches `/etc/frr` or
//! `/var/run/frr`. Configuration goes in through `vtysh -b` of `etc/frr.conf`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::unistd::{Group, User, chown};
use serde_json::Value;

use crate::netns::Netns;
use crate::process::{Process, wait_for};

/// The daemons of an instance, in start order (zebra first).
pub const DAEMONS: [&str; 4] = ["zebra", "staticd", "bfdd", "bgpd"];

/// A running FRR instance.
#[derive(Debug)]
pub struct Frr {
    // Dropped first: the daemons stop before anything else goes.
    daemons: Vec<(String, Process)>,
    run: PathBuf,
    etc: PathBuf,
    netns: String,
}

fn owned_by_frr(path: &Path) -> Result<()> {
    let user = User::from_name("frr")?.context("no user frr (is Debian's frr installed?)")?;
    let group = Group::from_name("frr")?.context("no group frr")?;
    chown(path, Some(user.uid), Some(group.gid))
        .with_context(|| format!("chown frr {}", path.display()))
}

/// Starts one daemon of the instance whose state is under `run`, in `ns`, and waits for its
/// vty socket. Its configuration is empty (`-f /dev/null`): configuration is typed in.
pub fn spawn_daemon(ns: &Netns, run: &Path, daemon: &str) -> Result<Process> {
    let mut command = ns.command(format!("/usr/lib/frr/{daemon}"));
    command
        .args(["-F", "traditional", "-u", "frr", "-g", "frr", "-P", "0"])
        .args(["-f", "/dev/null"])
        .arg("-i")
        .arg(run.join(format!("{daemon}.pid")))
        .arg("--vty_socket")
        .arg(run)
        .arg("-z")
        .arg(run.join("zserv.api"))
        .arg("--log")
        .arg(format!(
            "file:{}",
            run.join(format!("{daemon}.log")).display()
        ));
    match daemon {
        "zebra" => {
            command.args(["-s", "90000000"]);
        }
        "bfdd" => {
            command.arg("--bfdctl").arg(run.join("bfdd.sock"));
        }
        _ => {}
    }
    let socket = run.join(format!("{daemon}.vty"));
    let _ = std::fs::remove_file(&socket);
    let process = Process::spawn(daemon, command, &run.join(format!("{daemon}.out")))?;
    wait_for(
        &format!("{daemon} in {}", ns.name()),
        Duration::from_secs(10),
        || Ok(socket.exists().then_some(())),
    )?;
    Ok(process)
}

impl Frr {
    /// Starts the daemons in `ns`, keeping their state under `dir/{run,etc}`.
    pub fn start(ns: &Netns, dir: &Path) -> Result<Frr> {
        let run = dir.join("run");
        let etc = dir.join("etc");
        for d in [dir, &run, &etc] {
            std::fs::create_dir_all(d)?;
        }
        owned_by_frr(&run)?;
        owned_by_frr(&etc)?;
        std::fs::write(etc.join("vtysh.conf"), "")?;
        owned_by_frr(&etc.join("vtysh.conf"))?;
        let mut frr = Frr {
            daemons: Vec::new(),
            run,
            etc,
            netns: ns.name().to_string(),
        };
        for daemon in DAEMONS {
            frr.start_daemon(ns, daemon)?;
        }
        Ok(frr)
    }

    fn start_daemon(&mut self, ns: &Netns, daemon: &str) -> Result<()> {
        let process = spawn_daemon(ns, &self.run, daemon)?;
        self.daemons.push((daemon.to_string(), process));
        Ok(())
    }

    /// A handle on an instance started elsewhere (its directory `dir`, in namespace
    /// `netns`), for vtysh and loading configuration.
    pub fn client(dir: &Path, netns: &str) -> Frr {
        Frr {
            daemons: Vec::new(),
            run: dir.join("run"),
            etc: dir.join("etc"),
            netns: netns.to_string(),
        }
    }

    /// How ferrolb's applier reaches this instance.
    pub fn target(&self) -> ferrolb::frr::apply::FrrTarget {
        ferrolb::frr::apply::FrrTarget {
            vty_dir: self.run.clone(),
            config_dir: self.etc.clone(),
            ..Default::default()
        }
    }

    /// `show running-config`, normalised as ferrolb compares it with its rendering.
    pub fn running_config(&self) -> Result<String> {
        Ok(ferrolb::frr::running::normalise_running(
            &self.vtysh("show running-config")?,
        ))
    }

    /// Leaves the daemons running beyond this object; returns their PIDs.
    pub fn keep(self) -> Vec<u32> {
        self.daemons.into_iter().map(|(_, p)| p.keep()).collect()
    }

    fn vtysh_command(&self) -> Command {
        let mut command = Command::new("vtysh");
        command
            .arg("--vty_socket")
            .arg(&self.run)
            .arg("--config_dir")
            .arg(&self.etc);
        command
    }

    /// Writes `config` as the instance's `frr.conf` and loads it into every daemon.
    pub fn load(&self, config: &str) -> Result<()> {
        let path = self.etc.join("frr.conf");
        std::fs::write(&path, config)?;
        owned_by_frr(&path)?;
        let out = self
            .vtysh_command()
            .arg("-b")
            .output()
            .context("running vtysh -b")?;
        if !out.status.success() {
            bail!(
                "FRR in {} rejected its configuration: {}{}",
                self.netns,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Runs one vtysh command; returns its output.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        let out = self
            .vtysh_command()
            .args(["-c", command])
            .output()
            .context("running vtysh")?;
        if !out.status.success() {
            bail!(
                "vtysh -c {command:?} in {}: {}",
                self.netns,
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a `show … json` command; returns the parsed output.
    pub fn json(&self, command: &str) -> Result<Value> {
        let text = self.vtysh(command)?;
        serde_json::from_str(&text).with_context(|| format!("{command}: not JSON: {text}"))
    }
}
