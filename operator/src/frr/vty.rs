//! Talks to FRR's daemons straight through their vty sockets, the way vtysh does, without
//! starting vtysh.
//!
//! Each daemon (`zebra`, `bgpd`, `bfdd`, …) listens on `<vty_dir>/<daemon>.vty`. A client
//! writes a command terminated by a NUL byte; the daemon answers with the command's output
//! followed by three NUL bytes and the command's status (0 for success). Commands may be
//! pipelined: answers come back in order. A fresh connection starts in view mode, so
//! [`Vty::connect`] sends `enable` first.
//!
//! vtysh knows which daemons own each command, but every run starts a process and connects
//! to every daemon. Here the connections stay open, [`route`] sends each line of a delta to
//! the daemons that own it (the same split vtysh makes for ferrolb's grammar, and nothing
//! else: any other line makes the caller use vtysh), and [`Vty::running_config`] asks every
//! daemon for its part (the `frr_apply_*` benchmarks time the whole path). Every apply is
//! verified against the whole running configuration, so a line sent to the wrong daemon
//! shows up as a mismatch, never as silent drift.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

use super::commands::daemons::owners;
use super::dialect::Dialect;
use super::running::normalise_running;

/// Commands written before their answers are read.
const BATCH: usize = 512;
/// Time allowed for a batch, besides [`PER_COMMAND`] for each command in it.
const BATCH_TIME: Duration = Duration::from_secs(10);
/// Time allowed per command.
const PER_COMMAND: Duration = Duration::from_millis(20);

/// How many commands `daemon` takes before it has answered them. FRR 10's mgmtd takes one:
/// it holds a vty while its backends apply a command, and input that arrived in the
/// meantime is read garbled (`Unknown command: 10.0.21.0/24`) or not at all.
fn pipeline_depth(daemon: &str) -> usize {
    if daemon == "mgmtd" { 1 } else { BATCH }
}

/// Why talking to a daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum VtyError {
    /// No socket, or it refused the connection.
    #[error("cannot connect to {0}: {1}")]
    Connect(PathBuf, std::io::Error),
    /// The directory holds no daemon socket.
    #[error("no FRR daemon socket in {0}")]
    NoDaemons(PathBuf),
    /// Reading or writing failed (the daemon died or restarted).
    #[error("{daemon}: {source}")]
    Io {
        /// The daemon.
        daemon: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The daemon did not answer in time.
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// A command failed.
    #[error("{daemon} rejected {command:?} (status {status}): {output}")]
    Rejected {
        /// The daemon.
        daemon: String,
        /// The command.
        command: String,
        /// FRR's status code.
        status: u8,
        /// What the daemon printed.
        output: String,
    },
    /// The commands hold a line [`route`] does not place.
    #[error("no direct route for {0:?}")]
    Unroutable(String),
}

/// One daemon's answer to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    /// FRR's status: 0 is success.
    pub status: u8,
    /// What the daemon printed.
    pub output: String,
}

#[derive(Debug)]
struct Connection {
    stream: UnixStream,
    buffer: Vec<u8>,
}

/// Open connections to every daemon of one FRR instance.
#[derive(Debug)]
pub(crate) struct Vty {
    connections: BTreeMap<String, Connection>,
}

impl Vty {
    /// Connects to every daemon's `*.vty` socket in `dir` ([`daemon_sockets`]) and enables
    /// each session.
    pub(crate) async fn connect(dir: &Path) -> Result<Vty, VtyError> {
        let mut vty = Vty {
            connections: BTreeMap::new(),
        };
        for (daemon, path) in daemon_sockets(dir)? {
            let daemon = daemon.as_str();
            let stream = UnixStream::connect(&path)
                .await
                .map_err(|e| VtyError::Connect(path.clone(), e))?;
            vty.connections.insert(
                daemon.to_string(),
                Connection {
                    stream,
                    buffer: Vec::new(),
                },
            );
            vty.expect_success(daemon, &["enable"]).await?;
        }
        if vty.connections.is_empty() {
            return Err(VtyError::NoDaemons(dir.to_path_buf()));
        }
        Ok(vty)
    }

    /// The daemons connected, by name.
    pub(crate) fn daemons(&self) -> impl Iterator<Item = &str> {
        self.connections.keys().map(String::as_str)
    }

    /// Whether `dir` now holds the sockets of other daemons than those connected: FRR's
    /// daemons come up one by one (in a pod, the `frr` container starts beside the
    /// speaker), so a connection made early can miss bgpd.
    pub(crate) fn is_stale(&self, dir: &Path) -> bool {
        daemon_sockets(dir).is_ok_and(|sockets| {
            sockets.len() != self.connections.len()
                || sockets
                    .iter()
                    .any(|(daemon, _)| !self.connections.contains_key(daemon))
        })
    }

    /// Sends `commands` to `daemon`, pipelined as deep as it takes, and returns one reply
    /// per command.
    pub(crate) async fn exec(
        &mut self,
        daemon: &str,
        commands: &[&str],
    ) -> Result<Vec<Reply>, VtyError> {
        let connection = self
            .connections
            .get_mut(daemon)
            .ok_or_else(|| VtyError::Unroutable(format!("{daemon} is not running")))?;
        let mut replies = Vec::with_capacity(commands.len());
        for batch in commands.chunks(pipeline_depth(daemon)) {
            let allowed = BATCH_TIME + PER_COMMAND * batch.len() as u32;
            let exchange = connection.exchange(batch, &mut replies);
            match tokio::time::timeout(allowed, exchange).await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    return Err(VtyError::Io {
                        daemon: daemon.to_string(),
                        source,
                    });
                }
                Err(_) => return Err(VtyError::Timeout(daemon.to_string(), allowed)),
            }
        }
        Ok(replies)
    }

    /// Sends `commands` to `daemon`; the first failure is an error.
    pub(crate) async fn expect_success(
        &mut self,
        daemon: &str,
        commands: &[&str],
    ) -> Result<Vec<String>, VtyError> {
        let replies = self.exec(daemon, commands).await?;
        let mut outputs = Vec::with_capacity(replies.len());
        for (command, reply) in commands.iter().zip(replies) {
            if reply.status != 0 {
                return Err(VtyError::Rejected {
                    daemon: daemon.to_string(),
                    command: command.to_string(),
                    status: reply.status,
                    output: reply.output.trim().to_string(),
                });
            }
            outputs.push(reply.output);
        }
        Ok(outputs)
    }

    /// Runs one command on one daemon and returns its output.
    pub(crate) async fn query(&mut self, daemon: &str, command: &str) -> Result<String, VtyError> {
        let mut out = self.expect_success(daemon, &[command]).await?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Types configuration `commands` (in `configure terminal`, as one batch where the
    /// dialect has batches: [`Dialect::batch`]), each line on the daemons [`route`] gives
    /// it, then `exec` commands (`clear bgp …`) on bgpd. Errors from daemons that only
    /// mirror a line (zebra's copy of a prefix-list) are ignored, and so is the end of a
    /// batch that holds only such lines.
    pub(crate) async fn configure(
        &mut self,
        commands: &[String],
        exec: &[String],
        dialect: Dialect,
    ) -> Result<(), VtyError> {
        self.configure_on(commands, exec, dialect, None).await
    }

    /// [`Vty::configure`] on the daemons in `only` alone: what each of them holds of
    /// `commands`, copies included, typed into it and into no other.
    pub(crate) async fn configure_only(
        &mut self,
        commands: &[String],
        only: &[String],
        dialect: Dialect,
    ) -> Result<(), VtyError> {
        self.configure_on(commands, &[], dialect, Some(only)).await
    }

    async fn configure_on(
        &mut self,
        commands: &[String],
        exec: &[String],
        dialect: Dialect,
        only: Option<&[String]>,
    ) -> Result<(), VtyError> {
        let available: Vec<&str> = self.daemons().collect();
        let mut routed = route(commands, &available, dialect)?;
        if let Some(only) = only {
            routed.retain(|(daemon, _)| only.contains(daemon));
        }
        for (daemon, lines) in &routed {
            let (open, close) = dialect.batch(daemon);
            let mut script: Vec<&str> = Vec::with_capacity(lines.len() + open.len() + close.len());
            script.extend(open);
            script.extend(lines.iter().map(|l| l.text));
            script.extend(close);
            let replies = self.exec(daemon, &script).await?;
            let any_checked = lines.iter().any(|l| l.checked);
            let checked = open
                .iter()
                .map(|_| true)
                .chain(lines.iter().map(|l| l.checked))
                .chain(close.iter().map(|c| *c == "end" || any_checked));
            for ((command, reply), checked) in script.iter().zip(&replies).zip(checked) {
                if checked && reply.status != 0 {
                    // Leave configuration mode whatever state the failure left behind.
                    let _ = self.exec(daemon, close).await;
                    return Err(VtyError::Rejected {
                        daemon: daemon.to_string(),
                        command: command.to_string(),
                        status: reply.status,
                        output: reply.output.trim().to_string(),
                    });
                }
            }
        }
        if !exec.is_empty() {
            let exec: Vec<&str> = exec.iter().map(String::as_str).collect();
            self.expect_success("bgpd", &exec).await?;
        }
        Ok(())
    }

    /// Every daemon's running configuration, each normalised as
    /// [`normalise_running`] does, concatenated. Compared by canonical form, this is what
    /// vtysh prints: vtysh merges the daemons' parts and prints shared lines once.
    pub(crate) async fn running_config(&mut self) -> Result<String, VtyError> {
        Ok(self
            .running_configs()
            .await?
            .into_iter()
            .map(|(_, text)| text)
            .collect())
    }

    /// Each daemon's own running configuration, normalised: what vtysh's merged view hides
    /// (a line one daemon lost while another still holds its copy).
    pub(crate) async fn running_configs(&mut self) -> Result<Vec<(String, String)>, VtyError> {
        let daemons: Vec<String> = self.connections.keys().cloned().collect();
        let mut out = Vec::with_capacity(daemons.len());
        for daemon in daemons {
            let text = self.query(&daemon, "show running-config").await?;
            out.push((daemon, normalise_running(&text)));
        }
        Ok(out)
    }
}

/// The configuration daemons' vty sockets in `dir`, by daemon name: every `*.vty` but
/// watchfrr's (the supervisor FRR's init script starts holds none of the configuration and
/// prints an empty one).
fn daemon_sockets(dir: &Path) -> Result<BTreeMap<String, std::path::PathBuf>, VtyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| VtyError::Connect(dir.to_path_buf(), e))?;
    Ok(entries
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let daemon = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".vty"))
                .filter(|d| *d != "watchfrr")?
                .to_string();
            Some((daemon, path))
        })
        .collect())
}

impl Connection {
    async fn exchange(
        &mut self,
        commands: &[&str],
        replies: &mut Vec<Reply>,
    ) -> std::io::Result<()> {
        let mut request = Vec::with_capacity(commands.iter().map(|c| c.len() + 1).sum());
        for command in commands {
            request.extend_from_slice(command.as_bytes());
            request.push(0);
        }
        self.stream.write_all(&request).await?;
        let mut answered = 0;
        let mut chunk = vec![0u8; 64 * 1024];
        while answered < commands.len() {
            if let Some(reply) = take_reply(&mut self.buffer) {
                replies.push(reply);
                answered += 1;
                continue;
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the daemon closed its vty socket",
                ));
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    }
}

/// The first complete answer in `buffer`, removed from it.
pub(crate) fn take_reply(buffer: &mut Vec<u8>) -> Option<Reply> {
    let end = buffer.windows(3).position(|w| w == [0, 0, 0])?;
    let status = *buffer.get(end + 3)?;
    let output = String::from_utf8_lossy(&buffer[..end]).into_owned();
    buffer.drain(..end + 4);
    Some(Reply { status, output })
}

/// One configuration line for one daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Routed<'a> {
    /// The line.
    pub text: &'a str,
    /// Whether the daemon's rejection is an error; false where the daemon only mirrors
    /// the line (zebra's copy of route-maps and prefix-lists, which bgpd is the user of; on
    /// FRR 10 mgmtd takes it for zebra).
    pub checked: bool,
}

/// Splits configuration commands by daemon, keeping each daemon's lines in order. A block
/// (`router bgp …`, `route-map …`, `bfd`) goes to its owners up to its closing top-level
/// `exit`; inside a route-map, `set` lines go to bgpd alone (zebra and mgmtd have none of
/// bgpd's `set` clauses). Lines outside this grammar, or owned by a daemon that is not running,
/// are [`VtyError::Unroutable`]: the caller uses vtysh instead.
pub(crate) fn route<'a>(
    commands: &'a [String],
    available: &[&str],
    dialect: Dialect,
) -> Result<Vec<(String, Vec<Routed<'a>>)>, VtyError> {
    let mut out: BTreeMap<String, Vec<Routed<'a>>> = BTreeMap::new();
    let mut push = |daemon: &str, text: &'a str, checked: bool| {
        out.entry(daemon.to_string())
            .or_default()
            .push(Routed { text, checked });
    };
    // The owners of the block being typed, and whether it is a route-map.
    let mut block: Option<(Vec<&str>, Vec<&str>, bool)> = None;
    for line in commands {
        let indented = line.starts_with(' ');
        if indented || (line == "exit" && block.is_some()) {
            let Some((must, copy, route_map)) = &block else {
                return Err(VtyError::Unroutable(line.clone()));
            };
            let bgpd_only = *route_map && line.trim_start().starts_with("set ");
            for daemon in must {
                push(daemon, line, true);
            }
            if !bgpd_only {
                for daemon in copy {
                    push(daemon, line, false);
                }
            }
            if line == "exit" {
                block = None;
            }
            continue;
        }
        let (must, copy) =
            owners(line, dialect).ok_or_else(|| VtyError::Unroutable(line.clone()))?;
        let must: Vec<&str> = if must == ["*"] {
            available.to_vec()
        } else {
            for daemon in must {
                if !available.contains(daemon) {
                    return Err(VtyError::Unroutable(format!(
                        "{line} ({daemon} is not running)"
                    )));
                }
            }
            must.to_vec()
        };
        let copy: Vec<&str> = copy
            .iter()
            .copied()
            .filter(|d| available.contains(d))
            .collect();
        for daemon in &must {
            push(daemon, line, true);
        }
        for daemon in &copy {
            push(daemon, line, false);
        }
        let opens = !line.starts_with("no ")
            && (line == "bfd" || line.starts_with("route-map ") || line.starts_with("router bgp "));
        if opens {
            block = Some((must, copy, line.starts_with("route-map ")));
        }
    }
    // bfdd and zebra (or mgmtd for it) first: bgpd's lines may name their profiles and lists.
    let order = |d: &str| match d {
        "bfdd" => 0,
        "zebra" | "mgmtd" => 1,
        "bgpd" => 3,
        _ => 2,
    };
    let mut routed: Vec<(String, Vec<Routed<'a>>)> = out.into_iter().collect();
    routed.sort_by_key(|(d, _)| order(d));
    Ok(routed)
}

#[cfg(test)]
mod tests;
