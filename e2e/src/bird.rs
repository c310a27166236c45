//! A BIRD 2 router (Debian's `bird2`) in a namespace: one `bird` process in the foreground, a
//! child of the harness ended by PID, with its configuration, control socket and log under the
//! router's own directory; read with `birdc`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::Netns;
use crate::process::{Process, wait_for};

/// A running BIRD.
#[derive(Debug)]
pub struct Bird {
    // Dropped first: BIRD stops before its directory goes. `None` for a client of a BIRD
    // that runs beyond this object (the lab's).
    process: Option<Process>,
    socket: PathBuf,
    dir: PathBuf,
}

/// What `show protocols all NAME` says of a BGP protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpProtocol {
    /// `BGP state:` (`Established`, `Idle`, …).
    pub state: String,
    /// The protocol's own state (the `State` column: `up`, `start`, …), which turns `up` a
    /// moment after the session is Established.
    pub protocol: String,
    /// When the protocol last changed its own state (the `Since` column).
    pub since: String,
    /// `Last error:`, if BIRD gives one.
    pub last_error: Option<String>,
}

impl Bird {
    /// Starts BIRD in `ns` with `config` (its `log` line is added: `dir/bird.log`).
    pub fn start(ns: &Netns, dir: &Path, config: &str) -> Result<Bird> {
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("bird.conf");
        let socket = dir.join("bird.ctl");
        std::fs::write(
            &conf,
            format!("log \"{}\" all;\n{config}", dir.join("bird.log").display()),
        )?;
        let _ = std::fs::remove_file(&socket);
        let mut command = ns.command("bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket);
        let process = Process::spawn("bird", command, &dir.join("bird.out"))?;
        wait_for(
            &format!("bird in {}", ns.name()),
            Duration::from_secs(10),
            || Ok(socket.exists().then_some(())),
        )?;
        Ok(Bird {
            process: Some(process),
            socket,
            dir: dir.to_path_buf(),
        })
    }

    /// A client of the BIRD started in `dir` that runs beyond this object.
    pub fn client(dir: &Path) -> Bird {
        Bird {
            process: None,
            socket: dir.join("bird.ctl"),
            dir: dir.to_path_buf(),
        }
    }

    /// Leaves BIRD running beyond this object; returns its PID.
    pub fn keep(self) -> Option<u32> {
        self.process.map(Process::keep)
    }

    /// How many times BGP protocol `name` has come up, from BIRD's log: a session that
    /// flaps shows as more.
    pub fn established(&self, name: &str) -> usize {
        let line = format!("> {name}: BGP session established");
        self.log().lines().filter(|l| l.contains(&line)).count()
    }

    /// Runs one `birdc` command; returns its output.
    pub fn birdc(&self, command: &str) -> Result<String> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(command.split_whitespace())
            .output()
            .context("running birdc (Debian's bird2)")?;
        if !out.status.success() {
            bail!(
                "birdc {command}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The state of BGP protocol `name`.
    pub fn bgp(&self, name: &str) -> Result<BgpProtocol> {
        let text = self.birdc(&format!("show protocols all {name}"))?;
        let summary = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .with_context(|| format!("no protocol {name} in: {text}"))?;
        // name proto table state since info…
        let column = |n: usize| {
            summary
                .split_whitespace()
                .nth(n)
                .map(str::to_string)
                .with_context(|| format!("no column {n} in {summary:?}"))
        };
        let (protocol, since) = (column(3)?, column(4)?);
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        Ok(BgpProtocol {
            state: field("BGP state:").with_context(|| format!("no BGP state in: {text}"))?,
            protocol,
            since,
            last_error: field("Last error:"),
        })
    }

    /// The routes BIRD holds for `prefix` (`show route PREFIX all`); `None` when it has none
    /// (birdc then says "Network not found" and exits 1).
    pub fn route(&self, prefix: &str) -> Result<Option<String>> {
        match self.birdc(&format!("show route {prefix} all")) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.to_string().contains("Network not found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// BIRD's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }
}
