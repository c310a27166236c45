//! Puts a rendered configuration into a running FRR and proves it is there.
//!
//! When FRR is known to run the previous model, [`Applier::apply`] types [`delta::diff`]'s
//! commands first, so the change is on its way to the peers before anything else is done;
//! the checks rendering makes of words (names, passwords) run before that, on the model
//! without its bulk (announced networks and prefix-list lines are typed values that cannot
//! fail them). Then it renders the model and writes `frr.conf` atomically, so an FRR that
//! restarts boots with the configuration ferrolb last asked for. When FRR runs nothing of ours
//! (a fresh start: the delta from nothing is the whole configuration), the file is written
//! first and the delta typed after. Either way, `show running-config` is read back and
//! compared (normalised, by [`canonical`] form, because FRR prints some objects in creation
//! order) with the rendered text. When FRR's state is unknown, on a vtysh error, a mismatch,
//! or a change the delta engine cannot express, it runs `frr-reload.py --reload` on the file
//! and verifies again. If even that does not give
//! the rendered text, the last configuration that verified is written and reloaded, so FRR
//! keeps running something known, and the error is returned.
//!
//! Paths (vtysh, its socket directory, the configuration directory, frr-reload.py) are
//! fields of [`FrrTarget`], so the same code drives the speaker pod's `frr` container and a
//! lab instance in a network namespace.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::delta::{self, FrrDelta};
use super::model::FrrConfig;
use super::render::{self, RenderError};
use super::vty::{Vty, VtyError};

/// Largest command script typed through vtysh arguments; larger ones go through a file.
const MAX_ARGUMENT_SCRIPT: usize = 256 * 1024;
/// The line vtysh prints before the running configuration.
const RUNNING_CONFIG_MARKER: &str = "Current configuration:";

/// How to reach one FRR instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrrTarget {
    /// The `vtysh` binary.
    pub vtysh: PathBuf,
    /// The directory holding the daemons' vty sockets (`/var/run/frr`).
    pub vty_dir: PathBuf,
    /// The configuration directory; `frr.conf` is written here (`/etc/frr`).
    pub config_dir: PathBuf,
    /// FRR's `frr-reload.py`.
    pub reload_script: PathBuf,
}

impl Default for FrrTarget {
    /// FRR as packaged: `/usr/bin/vtysh`, `/var/run/frr`, `/etc/frr`.
    fn default() -> Self {
        FrrTarget {
            vtysh: PathBuf::from("/usr/bin/vtysh"),
            vty_dir: PathBuf::from("/var/run/frr"),
            config_dir: PathBuf::from("/etc/frr"),
            reload_script: PathBuf::from("/usr/lib/frr/frr-reload.py"),
        }
    }
}

impl FrrTarget {
    /// The `frr.conf` ferrolb writes.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("frr.conf")
    }

    fn vtysh(&self) -> Command {
        let mut command = Command::new(&self.vtysh);
        command
            .arg("--vty_socket")
            .arg(&self.vty_dir)
            .arg("--config_dir")
            .arg(&self.config_dir)
            .kill_on_drop(true);
        command
    }

    /// `frr-reload.py --reload` of this instance's frr.conf.
    pub fn reload_command(&self) -> std::process::Command {
        let bindir = self.vtysh.parent().unwrap_or(Path::new("/usr/bin"));
        let mut command = std::process::Command::new(&self.reload_script);
        command
            .args(["--reload", "--stdout", "--bindir"])
            .arg(bindir)
            .arg("--confdir")
            .arg(&self.config_dir)
            .arg("--rundir")
            .arg(std::env::temp_dir())
            .arg("--vty_socket")
            .arg(&self.vty_dir)
            .arg(self.config_file());
        command
    }

    /// Runs vtysh with one `-c` per command; returns its output, or the output and exit
    /// status as an error when a command failed.
    pub async fn run(&self, commands: &[&str]) -> Result<String, ApplyError> {
        let mut command = self.vtysh();
        for c in commands {
            command.arg("-c").arg(c);
        }
        output(command, "vtysh").await
    }

    /// FRR's running configuration, normalised as [`normalise_running`] does.
    pub async fn running_config(&self) -> Result<String, ApplyError> {
        let out = self.run(&["show running-config"]).await?;
        Ok(normalise_running(&out))
    }
}

async fn output(mut command: Command, what: &str) -> Result<String, ApplyError> {
    let out = command
        .output()
        .await
        .map_err(|e| ApplyError::Spawn(what.to_string(), e))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(ApplyError::Command {
            what: what.to_string(),
            status: out.status.code(),
            output: format!("{text}{}", String::from_utf8_lossy(&out.stderr))
                .trim()
                .to_string(),
        });
    }
    Ok(text)
}

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The model could not be rendered (a bug).
    #[error(transparent)]
    Render(#[from] RenderError),
    /// frr.conf could not be written.
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
    /// A program could not be started.
    #[error("cannot run {0}: {1}")]
    Spawn(String, std::io::Error),
    /// A program failed.
    #[error("{what} failed (exit {status:?}): {output}")]
    Command {
        /// Which program.
        what: String,
        /// Its exit code.
        status: Option<i32>,
        /// What it printed.
        output: String,
    },
    /// Talking to a daemon's vty socket failed.
    #[error(transparent)]
    Vty(#[from] VtyError),
    /// After a full reload FRR still runs something else.
    #[error("FRR does not run the rendered configuration after a reload; first difference: {0}")]
    Mismatch(String),
}

/// How a configuration reached FRR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyPath {
    /// FRR already ran it; nothing was typed.
    Unchanged,
    /// FRR's state was not known (the speaker started), and FRR was found running exactly
    /// the rendered configuration: adopted, nothing typed, no session touched.
    Adopted,
    /// Typed as a delta and verified.
    Delta(FrrDelta),
    /// Loaded with `frr-reload.py` and verified; the reason it was needed.
    Reload(String),
}

/// What one apply did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyReport {
    /// The path taken.
    pub path: ApplyPath,
    /// Wall time from start to verified.
    pub elapsed: Duration,
    /// Whether a delta went through the daemons' vty sockets (false: through vtysh).
    pub sockets: bool,
}

/// Applies models to one FRR instance, remembering what it verified last.
#[derive(Debug)]
pub struct Applier {
    target: FrrTarget,
    /// The model FRR is known to run, and its text; `None` when unknown.
    applied: Option<(FrrConfig, String)>,
    /// Open connections to the daemons' vty sockets; `None` until connected, or after
    /// they broke (a daemon restarted).
    vty: Option<Vty>,
}

impl Applier {
    /// An applier that knows nothing of FRR's state yet: its first apply is a reload.
    pub fn new(target: FrrTarget) -> Applier {
        Applier {
            target,
            applied: None,
            vty: None,
        }
    }

    /// The instance driven.
    pub fn target(&self) -> &FrrTarget {
        &self.target
    }

    /// The text FRR was last verified to run.
    pub fn applied_text(&self) -> Option<&str> {
        self.applied.as_ref().map(|(_, text)| text.as_str())
    }

    /// The daemons' vty sockets, connected on first use; `None` when they cannot be
    /// reached, and vtysh is used instead.
    async fn direct(&mut self) -> Option<&mut Vty> {
        if self.vty.is_none() {
            match Vty::connect(&self.target.vty_dir).await {
                Ok(vty) => self.vty = Some(vty),
                Err(error) => tracing::debug!(%error, "vty sockets not reachable; using vtysh"),
            }
        }
        self.vty.as_mut()
    }

    /// Notes a vty error: a broken connection is dropped, to be made again next time.
    fn vty_failed(&mut self, error: &VtyError) {
        if matches!(
            error,
            VtyError::Io { .. } | VtyError::Timeout(..) | VtyError::Connect(..)
        ) {
            self.vty = None;
        }
    }

    /// FRR's running configuration, normalised: each daemon's part read from its socket,
    /// or vtysh's merged view when the sockets cannot be used. Compare it with
    /// [`same_configuration`], which does not depend on which of the two it is.
    pub async fn running_config(&mut self) -> Result<String, ApplyError> {
        if let Some(vty) = self.direct().await {
            match vty.running_config().await {
                Ok(text) => return Ok(text),
                Err(error) => self.vty_failed(&error),
            }
        }
        self.target.running_config().await
    }

    /// Output of one `show` command on `daemon` (by its socket, else through vtysh).
    pub async fn query(&mut self, daemon: &str, command: &str) -> Result<String, ApplyError> {
        if let Some(vty) = self.direct().await {
            match vty.query(daemon, command).await {
                Ok(text) => return Ok(text),
                Err(error) => self.vty_failed(&error),
            }
        }
        self.target.run(&[command]).await
    }

    /// Records that FRR runs `model`, as the caller has verified.
    pub fn adopt(&mut self, model: &FrrConfig) -> Result<(), ApplyError> {
        let text = render::render(model)?;
        self.applied = Some((model.clone(), text));
        Ok(())
    }

    /// Forgets what FRR runs (e.g. it restarted): the next apply reloads.
    pub fn forget(&mut self) {
        self.applied = None;
    }

    /// Makes FRR run `model`; see the module documentation for the paths.
    pub async fn apply(&mut self, model: &FrrConfig) -> Result<ApplyReport, ApplyError> {
        let started = Instant::now();
        if let Some((running, _)) = &self.applied
            && running == model
        {
            return Ok(ApplyReport {
                path: ApplyPath::Unchanged,
                elapsed: started.elapsed(),
                sockets: false,
            });
        }
        // The usual path: FRR runs the last model; the delta goes in before the bulk is rendered.
        let mut typed_early = None;
        if let Some((running, _)) = &self.applied
            && let Ok(delta) = delta::diff(running, model)
            && render::render(&skeleton(model)).is_ok()
        {
            let typed = self.type_delta(&delta).await;
            typed_early = Some((delta, typed, started.elapsed().as_secs_f64() * 1e3));
        }
        let text = match render::render(model) {
            Ok(text) => text,
            Err(e) => {
                if typed_early.is_some() {
                    // What FRR runs now is not known: the next apply reloads.
                    self.applied = None;
                }
                return Err(e.into());
            }
        };
        if let Err(e) = write_atomically(&self.target.config_file(), &text) {
            if typed_early.is_some() {
                self.applied = None;
            }
            return Err(e);
        }
        if self.applied.is_none()
            && let Ok(running) = self.running_config().await
        {
            if is_blank(&running) {
                // An FRR that runs nothing of ours yet (a fresh start) takes the whole
                // configuration as one delta from nothing: far faster than frr-reload.py,
                // which needs minutes for a large file.
                self.applied = Some((blank(model), String::new()));
            } else if same_configuration(&text, &running) {
                // A restarted speaker finds its predecessor's work in place.
                self.applied = Some((model.clone(), text));
                return Ok(ApplyReport {
                    path: ApplyPath::Adopted,
                    elapsed: started.elapsed(),
                    sockets: false,
                });
            }
        }
        let reason = match self.applied.take() {
            None => "FRR's configuration is not known yet".to_string(),
            Some((running, running_text)) => {
                // Typed above, or (from a blank FRR) now.
                let attempt = match typed_early {
                    Some(typed) => Ok(typed),
                    None => match delta::diff(&running, model) {
                        Err(e) => Err(e.0),
                        Ok(delta) => {
                            let typed = self.type_delta(&delta).await;
                            Ok((delta, typed, started.elapsed().as_secs_f64() * 1e3))
                        }
                    },
                };
                match attempt {
                    Err(reason) => reason,
                    Ok((delta, typed, typed_ms)) => match typed {
                        Ok((now, sockets)) if same_configuration(&text, &now) => {
                            tracing::debug!(
                                typed_ms,
                                ms = started.elapsed().as_secs_f64() * 1e3,
                                "delta typed and checked"
                            );
                            self.applied = Some((model.clone(), text));
                            return Ok(ApplyReport {
                                path: ApplyPath::Delta(delta),
                                elapsed: started.elapsed(),
                                sockets,
                            });
                        }
                        Ok((now, _)) => {
                            // Kept for the fallback below, should the reload fail too.
                            self.applied = Some((running, running_text));
                            format!(
                                "the delta did not give the rendered configuration ({})",
                                first_difference(&text, &now)
                            )
                        }
                        Err(e) => {
                            self.applied = Some((running, running_text));
                            format!("the delta failed: {e}")
                        }
                    },
                }
            }
        };
        let last_good = self.applied.take();
        match self.reload_and_verify(&text).await {
            Ok(()) => {
                self.applied = Some((model.clone(), text));
                Ok(ApplyReport {
                    path: ApplyPath::Reload(reason),
                    elapsed: started.elapsed(),
                    sockets: false,
                })
            }
            Err(e) => {
                if let Some((good, good_text)) = last_good {
                    write_atomically(&self.target.config_file(), &good_text)?;
                    if self.reload_and_verify(&good_text).await.is_ok() {
                        self.applied = Some((good, good_text));
                    }
                }
                Err(e)
            }
        }
    }

    /// Types the delta (and its refreshes) and returns the running configuration after it:
    /// through the daemons' sockets when every line has a known owner, else through vtysh.
    async fn type_delta(&mut self, delta: &FrrDelta) -> Result<(String, bool), ApplyError> {
        if let Some(vty) = self.direct().await {
            let typed = match vty.configure(&delta.commands, &delta.refresh).await {
                Ok(()) => {
                    tracing::debug!(lines = delta.commands.len(), "delta typed");
                    vty.running_config().await
                }
                Err(error) => Err(error),
            };
            match typed {
                Ok(running) => return Ok((running, true)),
                Err(VtyError::Unroutable(line)) => {
                    tracing::debug!(%line, "delta typed through vtysh");
                }
                Err(error) => {
                    self.vty_failed(&error);
                    return Err(error.into());
                }
            }
        }
        Ok((self.type_with_vtysh(delta).await?, false))
    }

    async fn type_with_vtysh(&self, delta: &FrrDelta) -> Result<String, ApplyError> {
        let size: usize = delta.commands.iter().map(|c| c.len() + 1).sum();
        let out = if size <= MAX_ARGUMENT_SCRIPT {
            let mut commands: Vec<&str> = Vec::with_capacity(delta.commands.len() + 8);
            commands.push("configure terminal");
            commands.extend(delta.commands.iter().map(String::as_str));
            commands.push("end");
            commands.extend(delta.refresh.iter().map(String::as_str));
            commands.push("show running-config");
            self.target.run(&commands).await?
        } else {
            let script = self.target.config_dir.join("ferrolb-delta.conf");
            write_atomically(&script, &(delta.commands.join("\n") + "\n"))?;
            let mut command = self.target.vtysh();
            command.arg("-f").arg(&script);
            let typed = output(command, "vtysh -f").await;
            let _ = std::fs::remove_file(&script);
            typed?;
            let mut commands: Vec<&str> = delta.refresh.iter().map(String::as_str).collect();
            commands.push("show running-config");
            self.target.run(&commands).await?
        };
        Ok(normalise_running(&out))
    }

    async fn reload_and_verify(&mut self, text: &str) -> Result<(), ApplyError> {
        let mut command = Command::from(self.target.reload_command());
        command.kill_on_drop(true);
        let reload = output(command, "frr-reload.py").await;
        let running = self.running_config().await?;
        if same_configuration(text, &running) {
            return Ok(());
        }
        reload?;
        Err(ApplyError::Mismatch(first_difference(text, &running)))
    }
}

/// Whether a running configuration holds nothing ferrolb configures: no router, list,
/// route-map, BFD or next-hop tracking line (what a freshly started FRR prints).
pub fn is_blank(running: &str) -> bool {
    const OURS: [&str; 8] = [
        "router ",
        "ip prefix-list",
        "ipv6 prefix-list",
        "route-map ",
        "bfd",
        "ip nht",
        "ipv6 nht",
        "log stdout",
    ];
    !running
        .lines()
        .any(|line| OURS.iter().any(|ours| line.starts_with(ours)))
}

/// The model of a blank FRR on the node `model` is for.
fn blank(model: &FrrConfig) -> FrrConfig {
    FrrConfig {
        no_ipv4_forwarding: model.no_ipv4_forwarding,
        no_ipv6_forwarding: model.no_ipv6_forwarding,
        ..FrrConfig::default()
    }
}

/// Writes `path` through a temporary file in the same directory and a rename, so readers
/// see the old or the new file, never a part. The file is world-readable (FRR runs as `frr`).
/// It is not fsynced: after a crash of the machine the speaker renders it again before FRR
/// could need it, and an fsync per apply would cost more than the apply.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), ApplyError> {
    let fail = |e| ApplyError::Write(path.to_path_buf(), e);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".ferrolb-tmp");
    let temporary = path.with_file_name(name);
    let mut file = std::fs::File::create(&temporary).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(fail)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(fail)
}

/// `model` with one announced network per address family and one line per prefix-list at
/// most: rendering it runs every check rendering the whole model runs (the lines left out
/// hold only prefixes and numbers), for a fraction of the cost.
fn skeleton(model: &FrrConfig) -> FrrConfig {
    let mut out = model.clone();
    for router in &mut out.routers {
        for family in [&mut router.ipv4, &mut router.ipv6].into_iter().flatten() {
            family.networks.truncate(1);
        }
    }
    for list in out
        .ipv4_prefix_lists
        .iter_mut()
        .chain(&mut out.ipv6_prefix_lists)
    {
        list.entries.truncate(1);
    }
    out
}

/// `show running-config` as ferrolb renders it: without the banner, `frr version`,
/// `hostname`, `service integrated-vtysh-config` and `end`, which depend on the host.
/// Whatever vtysh printed before the banner (messages of earlier commands) is dropped too.
pub fn normalise_running(output: &str) -> String {
    let body = match output.find(RUNNING_CONFIG_MARKER) {
        Some(at) => &output[at + RUNNING_CONFIG_MARKER.len()..],
        None => output,
    };
    let mut lines = body.lines().skip_while(|l| l.trim().is_empty()).peekable();
    if lines.peek() == Some(&"!") {
        lines.next();
    }
    let mut out = String::with_capacity(body.len());
    for line in lines {
        if line.starts_with("frr version ")
            || line.starts_with("hostname ")
            || line == "service integrated-vtysh-config"
            || line == "end"
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A configuration as the set of its lines, each with the lines it sits under (`router bgp
/// 64512 > address-family ipv4 unicast > network 192.0.2.1/32`), sorted, each once. FRR
/// prints route-maps, prefix-lists, BFD profiles and VRF routers in the order they were
/// created, so after a delta the same configuration can print in another order than a
/// fresh load; this form is the same for both. It is also the same for vtysh's merged view
/// and for the daemons' parts read one by one, where lines every daemon prints (`frr
/// defaults`, `log …`) and the lists zebra mirrors appear more than once. Separators and
/// comments (`!…`) and block ends (`exit`, `exit-address-family`) carry no meaning and are
/// left out.
pub fn canonical(text: &str) -> Vec<String> {
    let mut out = walk(text, |parent: Option<&String>, line| match parent {
        Some(parent) => format!("{parent} > {line}"),
        None => line.to_string(),
    });
    out.sort_unstable();
    out.dedup();
    out
}

/// Calls `node` on each line that carries meaning (no separators, comments or block ends),
/// with what it returned for the line's parent (the nearest line above it with less
/// indentation); returns what it returned, in line order.
fn walk<T: Clone>(text: &str, mut node: impl FnMut(Option<&T>, &str) -> T) -> Vec<T> {
    let mut stack: Vec<(usize, T)> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty()
            || trimmed.starts_with('!')
            || trimmed == "exit"
            || trimmed == "exit-address-family"
        {
            continue;
        }
        let depth = line.len() - trimmed.len();
        while stack.last().is_some_and(|(d, _)| *d >= depth) {
            stack.pop();
        }
        let value = node(stack.last().map(|(_, v)| v), trimmed);
        out.push(value.clone());
        stack.push((depth, value));
    }
    out
}

/// Whether FRR's running configuration holds exactly the rendered one, in any print order:
/// the same [`canonical`] lines, compared through [`digest`].
pub fn same_configuration(rendered: &str, running: &str) -> bool {
    rendered == running || digest(rendered) == digest(running)
}

/// [`canonical`] as 64-bit hashes, sorted, each once: a line's hash covers its text and its
/// parent's hash, so it stands for the whole path without building it. Comparing digests of
/// two 10,000-line configurations takes about a millisecond, where sorting the path strings
/// takes tens; the chance that two different configurations give the same digest is that of
/// a 64-bit collision.
pub fn digest(text: &str) -> Vec<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let mut out = walk(text, |parent: Option<&u64>, line| {
        // SipHash with fixed keys: the same line hashes the same in every process.
        let mut hasher = std::hash::DefaultHasher::new();
        parent.copied().unwrap_or(0).hash(&mut hasher);
        line.hash(&mut hasher);
        hasher.finish()
    });
    out.sort_unstable();
    out.dedup();
    out
}

/// What differs between two configurations, for messages: the first few lines missing from
/// FRR and the first few it has in excess.
pub fn first_difference(expected: &str, running: &str) -> String {
    let (a, b) = (canonical(expected), canonical(running));
    let missing: Vec<&String> = a.iter().filter(|l| b.binary_search(l).is_err()).collect();
    let extra: Vec<&String> = b.iter().filter(|l| a.binary_search(l).is_err()).collect();
    if missing.is_empty() && extra.is_empty() {
        return "none".to_string();
    }
    let show = |lines: &[&String]| {
        let mut text = lines
            .iter()
            .take(3)
            .map(|l| format!("{l:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        if lines.len() > 3 {
            text.push_str(&format!(" and {} more", lines.len() - 3));
        }
        text
    };
    format!(
        "FRR lacks {} line(s) [{}] and has {} more [{}]",
        missing.len(),
        show(&missing),
        extra.len(),
        show(&extra)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model of a golden case for `node-a`.
    fn golden_model(case: &str) -> FrrConfig {
        let path = format!(
            "{}/tests/golden/{case}/input.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("golden input readable");
        let parsed = crate::manifest::parse(&text, "input.yaml", "metallb-system").expect("YAML");
        let config = crate::config::load(&parsed.objects, &crate::config::LoadOptions::default())
            .expect("golden input loads");
        let node = crate::offline::prepare(
            config,
            &parsed.objects,
            "node-a",
            crate::cluster::ServiceScope::default(),
        );
        crate::frr::build(&node.config, &node.intent(), &node.node, Default::default())
    }

    #[test]
    fn the_skeleton_keeps_every_checked_word_and_drops_the_bulk() {
        let model = golden_model("peer-filter");
        let networks = |m: &FrrConfig| -> usize {
            m.routers
                .iter()
                .flat_map(|r| [&r.ipv4, &r.ipv6])
                .flatten()
                .map(|f| f.networks.len())
                .sum()
        };
        let lines = |m: &FrrConfig| -> usize {
            m.ipv4_prefix_lists
                .iter()
                .chain(&m.ipv6_prefix_lists)
                .map(|l| l.entries.len())
                .sum()
        };
        let small = skeleton(&model);
        assert!(networks(&model) > networks(&small) && networks(&small) > 0);
        assert!(lines(&model) > lines(&small) && lines(&small) > 0);
        assert_eq!(model.route_maps, small.route_maps);
        assert!(render::render(&small).is_ok());

        // A word the template refuses fails the skeleton as it fails the whole model, so the
        // delta for such a model is never typed.
        let mut bad = model.clone();
        bad.routers[0].neighbors[0].password = Some("two words".into());
        assert!(render::render(&bad).is_err());
        assert!(render::render(&skeleton(&bad)).is_err());
    }

    #[test]
    fn running_config_loses_the_host_dependent_lines() {
        let output = "% The route-map 'x' does not exist.\nBuilding configuration...\n\nCurrent configuration:\n!\nfrr version 8.4.4\nfrr defaults traditional\nhostname vm\nservice integrated-vtysh-config\nlog stdout informational\n!\nend\n";
        assert_eq!(
            normalise_running(output),
            "frr defaults traditional\nlog stdout informational\n!\n"
        );
    }

    #[test]
    fn print_order_of_top_level_objects_does_not_matter_but_content_does() {
        let fresh = "router bgp 1\n neighbor a remote-as 2\n !\n address-family ipv4 unicast\n  network 10.0.0.1/32\n exit-address-family\nexit\n!\nroute-map a permit 1\nexit\n!\nroute-map b permit 1\nexit\n!\n";
        let later = "router bgp 1\n neighbor a remote-as 2\n !\n address-family ipv4 unicast\n  network 10.0.0.1/32\n exit-address-family\nexit\n!\nroute-map b permit 1\nexit\n!\nroute-map a permit 1\nexit\n!\n";
        assert!(same_configuration(fresh, later));
        let moved = later.replace("  network", " network");
        assert!(!same_configuration(fresh, &moved));
        assert_eq!(
            first_difference(fresh, &moved),
            "FRR lacks 1 line(s) [\"router bgp 1 > address-family ipv4 unicast > network 10.0.0.1/32\"] and has 1 more [\"router bgp 1 > network 10.0.0.1/32\"]"
        );
        assert_eq!(first_difference(fresh, later), "none");
    }

    #[test]
    fn lines_every_daemon_prints_count_once_and_parents_matter() {
        let rendered = "frr defaults traditional\nip prefix-list a seq 1 permit 10.0.0.1/32\nroute-map m permit 1\n match ip address prefix-list a\n set community 1:1\nexit\n";
        // What the daemons print one by one: zebra mirrors the list and the route-map.
        let zebra = "frr defaults traditional\n! a comment\nip prefix-list a seq 1 permit 10.0.0.1/32\nroute-map m permit 1\n match ip address prefix-list a\nexit\n";
        let bgpd = "frr defaults traditional\nip prefix-list a seq 1 permit 10.0.0.1/32\nroute-map m permit 1\n match ip address prefix-list a\n set community 1:1\nexit\n";
        assert!(same_configuration(rendered, &format!("{zebra}{bgpd}")));
        assert_eq!(digest(rendered).len(), canonical(rendered).len());
        // The same line under another parent is another line.
        let other = rendered.replace("route-map m permit 1", "route-map m permit 2");
        assert!(!same_configuration(rendered, &other));
        assert!(!same_configuration(rendered, zebra));
    }

    #[test]
    fn files_are_replaced_whole_and_readable_by_frr() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("ferrolb-apply-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("frr.conf");
        write_atomically(&path, "one\n").unwrap();
        write_atomically(&path, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
