//! A GoBGP router (Debian's `gobgpd`) in a namespace: one `gobgpd` process, a child of the
//! harness ended by PID, with its configuration and log under the router's own directory,
//! its gRPC API on the namespace's loopback; read with `gobgp`. GoBGP installs nothing in
//! the kernel: what it learned is read from its RIB.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::netns::Netns;
use crate::process::{Process, wait_for};

/// The API's port, on the namespace's loopback.
const API_PORT: &str = "50051";

/// A running GoBGP.
#[derive(Debug)]
pub struct GoBgp {
    // `None` for a client of a GoBGP that runs beyond this object (the lab's).
    process: Option<Process>,
    netns: String,
    dir: PathBuf,
}

impl GoBgp {
    /// Starts gobgpd in `ns` with `config` (TOML).
    pub fn start(ns: &Netns, dir: &Path, config: &str) -> Result<GoBgp> {
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("gobgpd.toml");
        std::fs::write(&conf, config)?;
        let mut command = ns.command("gobgpd");
        command
            .arg("-f")
            .arg(&conf)
            .args(["--log-plain", "--pprof-disable", "--api-hosts"])
            .arg(format!("127.0.0.1:{API_PORT}"));
        let process = Process::spawn("gobgpd", command, &dir.join("gobgpd.log"))?;
        let gobgp = GoBgp {
            process: Some(process),
            netns: ns.name().to_string(),
            dir: dir.to_path_buf(),
        };
        wait_for(
            &format!("gobgpd in {}", ns.name()),
            Duration::from_secs(10),
            || Ok(gobgp.gobgp(&["global"]).is_ok().then_some(())),
        )?;
        Ok(gobgp)
    }

    /// A client of the gobgpd started in `dir` in namespace `netns`.
    pub fn client(dir: &Path, netns: &str) -> GoBgp {
        GoBgp {
            process: None,
            netns: netns.to_string(),
            dir: dir.to_path_buf(),
        }
    }

    /// Leaves gobgpd running beyond this object; returns its PID.
    pub fn keep(self) -> Option<u32> {
        self.process.map(Process::keep)
    }

    /// Runs one `gobgp` command against this gobgpd; returns its output.
    pub fn gobgp(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "gobgp",
                "-u",
                "127.0.0.1",
                "-p",
            ])
            .arg(API_PORT)
            .args(args)
            .output()
            .context("running gobgp (Debian's gobgpd)")?;
        if !out.status.success() {
            bail!(
                "gobgp {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether the session to `neighbor` is Established.
    pub fn established(&self, neighbor: &str) -> Result<bool> {
        let text = self.gobgp(&["neighbor", neighbor, "-j"])?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("gobgp neighbor {neighbor} -j: {text}"))?;
        // GoBGP's API numbers the FSM states; 6 is Established.
        Ok(value["state"]["session_state"] == 6)
    }

    /// What GoBGP holds for `prefix` (`gobgp global rib PREFIX`, one line per path); `None`
    /// when it has none.
    pub fn route(&self, prefix: &str) -> Result<Option<String>> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let text = self.gobgp(&["global", "rib", "-a", family, prefix])?;
        Ok(text
            .contains(prefix.split('/').next().unwrap_or(prefix))
            .then_some(text))
    }

    /// How many times the session to `neighbor` has come up, from gobgpd's log.
    pub fn ups(&self, neighbor: &str) -> usize {
        let key = format!("Key={neighbor} ");
        std::fs::read_to_string(self.dir.join("gobgpd.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("msg=\"Peer Up\"") && l.contains(&key))
            .count()
    }
}
