//! Puts a rendered configuration into a running FRR and proves it is there.
//!
//! When FRR is known to run the previous model, [`Applier::apply`] types [`delta::diff`]'s
//! commands first, so the change is on its way to the peers before anything else is done
//! (nothing rendering could refuse is in a model: its names and secrets are checked words,
//! [`super::commands::Word`]). Then it renders the model and writes `frr.conf` atomically, so an FRR that
//! restarts boots with the configuration ferrolb last asked for, less every neighbour's BFD
//! (which the speaker adds as sessions come up: [`super::bfd_hold`]). When FRR runs nothing of ours
//! (a fresh start: the delta from nothing is the whole configuration), the file is written
//! first and the delta typed after. Either way, `show running-config` is read back and
//! compared (normalised, by [`super::running::canonical`] form, because FRR prints some
//! objects in creation order) with the rendered text. When FRR's state is unknown, on a
//! vtysh error, a mismatch, or a change the delta engine cannot express, it runs
//! `frr-reload.py --reload` on the whole rendering and verifies again. If even that does not give the
//! rendered text, the last configuration that verified is written and reloaded, so FRR keeps
//! running something known, and the error is returned.
//!
//! The text is rendered as the running FRR prints it: the applier reads FRR's version
//! (`show version`) whenever it does not know FRR's state, and renders in that version's
//! [`Dialect`]. A version ferrolb does not know is never driven by guesses: no delta is typed
//! and nothing is adopted; every change is loaded by `frr-reload.py`, with a warning, and
//! what FRR prints after it is taken as the verified text (see [`FrrVersion`]).
//!
//! Paths (vtysh, its socket directory, the configuration directory, frr-reload.py) are
//! fields of [`FrrTarget`], so the same code drives the speaker pod's `frr` container and a
//! lab instance in a network namespace.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::bfd_hold::boot_text;
use super::delta::{self, FrrDelta};
use super::dialect::{Dialect, version_of_show_version};
use super::model::FrrConfig;
use super::render::{self, RenderError};
use super::running::{
    first_difference, hidden_losses, is_blank, lacking, normalise_running, same_configuration,
};
use super::vty::{Vty, VtyError};

mod target;
use target::output;
pub use target::{FrrTarget, write_atomically};

/// Largest command script typed through vtysh arguments; larger ones go through a file.
const MAX_ARGUMENT_SCRIPT: usize = 256 * 1024;

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
    /// `show version` did not name FRR's version.
    #[error("cannot tell FRR's version from `show version`: {0:?}")]
    Version(String),
    /// After a full reload FRR still runs something else.
    #[error("FRR does not run the rendered configuration after a reload; first difference: {0}")]
    Mismatch(String),
}

/// What the running FRR says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrrVersion {
    /// As `show version` gives it (`10.3`).
    pub version: String,
    /// Its dialect; `None` for a version ferrolb does not know, which is driven through
    /// `frr-reload.py` alone.
    pub dialect: Option<Dialect>,
}

impl FrrVersion {
    /// The version `show version` printed.
    pub fn of_show_version(output: &str) -> Result<FrrVersion, ApplyError> {
        let version = version_of_show_version(output).ok_or_else(|| {
            ApplyError::Version(output.lines().next().unwrap_or_default().to_string())
        })?;
        Ok(FrrVersion {
            version: version.to_string(),
            dialect: Dialect::of_version(version),
        })
    }
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
    /// The running FRR's version; `None` until read, and again whenever FRR's state is
    /// unknown (a restarted FRR may be another version).
    frr: Option<FrrVersion>,
    /// Neighbours with BFD configured whose session bfdd did not list, and how many polls
    /// in a row it did not ([`Applier::repair_bfd`]).
    bfd_missing: std::collections::BTreeMap<(String, String), u32>,
}

/// Polls in a row a neighbour's BFD session may be missing from bfdd before its
/// registration is made again.
const BFD_MISSING_POLLS: u32 = 2;

impl Applier {
    /// An applier that knows nothing of FRR's state yet: its first apply is a reload.
    pub fn new(target: FrrTarget) -> Applier {
        Applier {
            target,
            applied: None,
            vty: None,
            frr: None,
            bfd_missing: std::collections::BTreeMap::new(),
        }
    }

    /// The running FRR's version, once read.
    pub fn frr_version(&self) -> Option<&FrrVersion> {
        self.frr.as_ref()
    }

    /// The dialect texts are rendered in: the running FRR's, or the image's before that is
    /// known and for a version ferrolb does not know.
    pub fn dialect(&self) -> Dialect {
        self.frr
            .as_ref()
            .and_then(|f| f.dialect)
            .unwrap_or_default()
    }

    /// Reads FRR's version.
    async fn read_version(&mut self) -> Result<FrrVersion, ApplyError> {
        let output = self.query("bgpd", "show version").await?;
        let version = FrrVersion::of_show_version(&output)?;
        match version.dialect {
            Some(dialect) => tracing::debug!(%dialect, "FRR's version read"),
            None => tracing::warn!(
                version = %version.version,
                known = %Dialect::known(),
                "FRR runs a version ferrolb does not know: every change is loaded with frr-reload.py"
            ),
        }
        Ok(version)
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
        if self
            .vty
            .as_ref()
            .is_some_and(|vty| vty.is_stale(&self.target.vty_dir))
        {
            tracing::debug!("FRR's daemon sockets changed; connecting again");
            self.vty = None;
        }
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

    /// The first daemon that lacks lines of its part of the applied configuration (bgpd
    /// restarted empty beside a zebra that still mirrors the prefix-lists, which vtysh's
    /// merged view prints as if nothing were missing), said for a log; `None` when none does
    /// or the daemons cannot be asked one by one.
    pub async fn daemon_lacking(&mut self) -> Option<String> {
        let text = self.applied_text()?.to_string();
        let dialect = self.dialect();
        let parts = match self.direct().await?.running_configs().await {
            Ok(parts) => parts,
            Err(error) => {
                self.vty_failed(&error);
                return None;
            }
        };
        parts
            .iter()
            .find_map(|(daemon, running)| lacking(&text, daemon, running, dialect))
    }

    /// Types back into each daemon what it lost of its part of `text` while other daemons
    /// kept their copies ([`hidden_losses`]: a bgpd restarted alone, beside a zebra that still
    /// has the prefix-lists). frr-reload.py and a delta both work from the merged view, in
    /// which those copies hide the loss; what FRR lacks altogether is theirs to put in.
    async fn restore_lacking(&mut self, text: &str) {
        let dialect = self.dialect();
        let Some(vty) = self.direct().await else {
            return;
        };
        let parts = match vty.running_configs().await {
            Ok(parts) => parts,
            Err(error) => {
                self.vty_failed(&error);
                return;
            }
        };
        for (daemon, running) in &parts {
            let elsewhere: String = parts
                .iter()
                .filter(|(other, _)| other != daemon)
                .map(|(_, t)| t.as_str())
                .collect();
            let lines = hidden_losses(text, daemon, running, &elsewhere, dialect);
            if lines.is_empty() {
                continue;
            }
            let Some(vty) = self.direct().await else {
                return;
            };
            let only = [daemon.clone()];
            match vty.configure_only(&lines, &only, dialect).await {
                Ok(()) => tracing::warn!(
                    daemon = %daemon,
                    lines = lines.len(),
                    first = %lines[0],
                    "an FRR daemon had lost lines the others still hold (restarted alone); typed them into it again"
                ),
                Err(error) => {
                    tracing::warn!(%error, daemon = %daemon, "typing lost lines into an FRR daemon");
                    self.vty_failed(&error);
                }
            }
        }
    }

    /// Registers BFD again for each neighbour the applied configuration gives BFD but whose
    /// session bfdd (`bfd`, its `show bfd peers`) has not listed for [`BFD_MISSING_POLLS`]
    /// polls: bgpd asks for its sessions through zebra, and a zebra restarted alone leaves
    /// bfdd without them while bgpd waits for them, holding those neighbours down. Types
    /// `no neighbor X bfd` and the neighbour's BFD lines again into bgpd; returns the
    /// neighbours, for the log.
    pub async fn repair_bfd(&mut self, bfd: &[super::sessions::BfdSession]) -> Vec<String> {
        let Some((model, _)) = &self.applied else {
            self.bfd_missing.clear();
            return Vec::new();
        };
        let mut due: Vec<(String, String, Vec<String>)> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for router in &model.routers {
            let vrf = router.vrf.as_deref().unwrap_or("default").to_string();
            for neighbor in &router.neighbors {
                let Some(profile) = &neighbor.bfd_profile else {
                    continue;
                };
                let key = (vrf.clone(), neighbor.peer.to_string());
                seen.insert(key.clone());
                let listed = bfd.iter().any(|b| b.peer == *neighbor.peer && b.vrf == vrf);
                if listed {
                    self.bfd_missing.remove(&key);
                    continue;
                }
                let count = self.bfd_missing.entry(key.clone()).or_default();
                *count += 1;
                if *count < BFD_MISSING_POLLS {
                    continue;
                }
                *count = 0;
                let open = match &router.vrf {
                    Some(v) => format!("router bgp {} vrf {v}", router.asn),
                    None => format!("router bgp {}", router.asn),
                };
                let peer = &neighbor.peer;
                due.push((
                    vrf.clone(),
                    peer.to_string(),
                    vec![
                        open,
                        format!(" no neighbor {peer} bfd"),
                        format!(" neighbor {peer} bfd"),
                        format!(" neighbor {peer} bfd profile {profile}"),
                        "exit".to_string(),
                    ],
                ));
            }
        }
        self.bfd_missing.retain(|key, _| seen.contains(key));
        let mut repaired = Vec::new();
        for (vrf, peer, commands) in due {
            let dialect = self.dialect();
            let Some(vty) = self.direct().await else {
                break;
            };
            match vty.configure(&commands, &[], dialect).await {
                Ok(()) => repaired.push(format!("{peer} (vrf {vrf})")),
                Err(error) => {
                    tracing::warn!(%error, %peer, "registering the neighbour's BFD again");
                    self.vty_failed(&error);
                }
            }
        }
        repaired
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

    /// Withdraws every network, then removes every BGP router FRR runs (`no router bgp …`,
    /// VRF routers before the default one, which they may import from), so that FRR ends
    /// each session with a Cease "peer de-configured"; returns how many routers. FRR's
    /// configuration is unknown afterwards.
    pub async fn remove_routers(&mut self) -> Result<usize, ApplyError> {
        // First every network withdrawn by an UPDATE, which a peer acts on whatever it
        // makes of the session's end (a peer that negotiated graceful restart may keep the
        // routes of a session ended even by a Cease).
        if let Some((model, _)) = &self.applied {
            let mut bare = model.clone();
            for router in &mut bare.routers {
                for family in [&mut router.ipv4, &mut router.ipv6].into_iter().flatten() {
                    family.networks.clear();
                }
            }
            if let Ok(delta) = delta::diff(model, &bare)
                && !delta.is_empty()
            {
                self.type_delta(&delta).await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        let running = self.running_config().await?;
        let mut routers: Vec<&str> = running
            .lines()
            .filter(|l| l.starts_with("router bgp "))
            .collect();
        routers.sort_by_key(|l| !l.contains(" vrf "));
        let delta = FrrDelta {
            commands: routers.iter().map(|r| format!("no {r}")).collect(),
            refresh: Vec::new(),
            networks_added: 0,
            networks_removed: 0,
        };
        self.applied = None;
        if delta.commands.is_empty() {
            return Ok(0);
        }
        self.type_delta(&delta).await?;
        Ok(delta.commands.len())
    }

    /// Records that FRR runs `model`, as the caller has verified.
    pub fn adopt(&mut self, model: &FrrConfig) -> Result<(), ApplyError> {
        let text = render::render(model, self.dialect())?;
        self.applied = Some((model.clone(), text));
        Ok(())
    }

    /// Forgets what FRR runs (e.g. it restarted): the next apply reloads.
    pub fn forget(&mut self) {
        self.applied = None;
        self.frr = None;
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
        if self.applied.is_none() || self.frr.is_none() {
            self.frr = Some(self.read_version().await?);
        }
        let dialect = self.dialect();
        if let Some(frr) = self.frr.clone().filter(|f| f.dialect.is_none()) {
            return self.apply_unknown(model, &frr, started).await;
        }
        // The usual path: FRR runs the last model; the delta goes in before the bulk is rendered.
        let mut typed_early = None;
        if let Some((running, _)) = &self.applied
            && let Ok(delta) = delta::diff(running, model)
        {
            let typed = self.type_delta(&delta).await;
            typed_early = Some((delta, typed, started.elapsed().as_secs_f64() * 1e3));
        }
        let text = match render::render(model, dialect) {
            Ok(text) => text,
            Err(e) => {
                if typed_early.is_some() {
                    // What FRR runs now is not known: the next apply reloads.
                    self.applied = None;
                }
                return Err(e.into());
            }
        };
        if let Err(e) = write_atomically(&self.target.config_file(), &boot_text(&text)) {
            if typed_early.is_some() {
                self.applied = None;
            }
            return Err(e);
        }
        let restored = self.applied.is_none();
        if restored {
            self.restore_lacking(&text).await;
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
        if !restored {
            // The delta failed against a daemon restarted alone (bgpd, empty, beside a zebra
            // that kept the prefix-lists): frr-reload.py, working from the merged view, would
            // not type what only the others hold.
            self.restore_lacking(&text).await;
        }
        self.prime(model).await;
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
                tracing::warn!(%reason, "FRR's configuration needed a reload, which failed");
                if let Some((good, good_text)) = last_good {
                    write_atomically(&self.target.config_file(), &boot_text(&good_text))?;
                    if self.reload_and_verify(&good_text).await.is_ok() {
                        self.applied = Some((good, good_text));
                    }
                }
                Err(e)
            }
        }
    }

    /// [`Applier::apply`] for an FRR version ferrolb does not know: `frr-reload.py` of the
    /// rendering, and what FRR prints after it taken as the verified text.
    async fn apply_unknown(
        &mut self,
        model: &FrrConfig,
        frr: &FrrVersion,
        started: Instant,
    ) -> Result<ApplyReport, ApplyError> {
        let text = render::render(model, self.dialect())?;
        write_atomically(&self.target.config_file(), &boot_text(&text))?;
        self.applied = None;
        self.target.reload(&text).await?;
        let running = self.running_config().await?;
        if !same_configuration(&text, &running) {
            tracing::warn!(
                version = %frr.version,
                difference = %first_difference(&text, &running),
                "FRR prints the reloaded configuration differently from the versions ferrolb knows; what it prints is taken as applied"
            );
        }
        self.applied = Some((model.clone(), running));
        Ok(ApplyReport {
            path: ApplyPath::Reload(format!(
                "FRR {} is not a version ferrolb knows ({})",
                frr.version,
                Dialect::known()
            )),
            elapsed: started.elapsed(),
            sockets: false,
        })
    }

    /// Types the delta (and its refreshes) and returns the running configuration after it:
    /// through the daemons' sockets when every line has a known owner, else through vtysh.
    async fn type_delta(&mut self, delta: &FrrDelta) -> Result<(String, bool), ApplyError> {
        let dialect = self.dialect();
        if let Some(vty) = self.direct().await {
            let typed = match vty
                .configure(&delta.commands, &delta.refresh, dialect)
                .await
            {
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

    /// Types what bgpd must hold before a reload loads the rest: bgpd runs its first
    /// route-map pass after the delay it has when the first route-map arrives, and starts no
    /// neighbour that uses a route-map before that pass. A restarted bgpd has FRR's 5 s;
    /// frr-reload.py would send the route-maps before the delay took effect. A failure is
    /// left to the reload, which types the line again.
    async fn prime(&mut self, model: &FrrConfig) {
        let Some(seconds) = model.route_map_delay else {
            return;
        };
        let line = super::commands::route_map_delay_line(seconds);
        let dialect = self.dialect();
        let typed = if let Some(vty) = self.direct().await {
            let typed = vty
                .configure(std::slice::from_ref(&line), &[], dialect)
                .await;
            if let Err(error) = &typed {
                self.vty_failed(error);
            }
            typed.map_err(ApplyError::from)
        } else {
            self.target
                .run(&["configure terminal", &line, "end"])
                .await
                .map(drop)
        };
        if let Err(error) = typed {
            tracing::debug!(%error, "route-map delay not typed before the reload");
        }
    }

    async fn reload_and_verify(&mut self, text: &str) -> Result<(), ApplyError> {
        let reload = self.target.reload(text).await;
        let running = self.running_config().await?;
        if same_configuration(text, &running) {
            return Ok(());
        }
        reload?;
        Err(ApplyError::Mismatch(first_difference(text, &running)))
    }
}

/// The model of a blank FRR on the node `model` is for.
fn blank(model: &FrrConfig) -> FrrConfig {
    FrrConfig {
        no_ipv4_forwarding: model.no_ipv4_forwarding,
        no_ipv6_forwarding: model.no_ipv6_forwarding,
        ..FrrConfig::default()
    }
}

#[cfg(test)]
mod tests;
