//! A hermetic FRR instance in a namespace: zebra, staticd, bfdd and bgpd (and mgmtd first,
//! on FRR 10) run as children of the harness, with every socket, pid file and log under the
//! instance's own directory, so many instances run side by side and nothing touches
//! `/etc/frr` or `/var/run/frr`. Configuration goes in through `vtysh -b` of `etc/frr.conf`.
//!
//! An instance runs one of two FRR builds ([`Build`]): Debian 12's FRR 8.4, this machine's
//! own package, or Debian 13's FRR 10.3 from the root file system of `hack/rootfs.sh`, each
//! of its programs started through `hack/in-root.sh`. The instance's directory says which:
//! a 10.3 instance keeps the root's path in `root`, and wrappers in `bin/` (`vtysh`,
//! `frr-reload.py`) that run the root's programs, as a speaker beside it needs them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferrolb::frr::Dialect;
use nix::unistd::{Gid, Uid, chown};
use serde_json::Value;

use crate::netns::Netns;
use crate::paths;
use crate::process::{Process, wait_for};

/// The daemons every instance runs, in start order (zebra first), after mgmtd where the
/// build has it.
pub const DAEMONS: [&str; 4] = ["zebra", "staticd", "bfdd", "bgpd"];

/// Which FRR an instance runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Build {
    /// Debian 12's FRR 8.4: this machine's `frr` package.
    Host,
    /// Debian 13's FRR 10.3, from the root file system at this path.
    Root(PathBuf),
}

impl Build {
    /// FRR 10.3, from [`paths::frr10_root`].
    pub fn frr10() -> Result<Build> {
        Ok(Build::Root(paths::frr10_root()?))
    }

    /// The build of `dialect`.
    pub fn of(dialect: Dialect) -> Result<Build> {
        match dialect {
            Dialect::Frr8 => Ok(Build::Host),
            Dialect::Frr10 => Build::frr10(),
        }
    }

    /// How the build prints its configuration.
    pub fn dialect(&self) -> Dialect {
        match self {
            Build::Host => Dialect::Frr8,
            Build::Root(_) => Dialect::Frr10,
        }
    }

    /// The build an instance directory was started with.
    fn of_instance(dir: &Path) -> Build {
        match std::fs::read_to_string(dir.join("root")) {
            Ok(root) => Build::Root(PathBuf::from(root.trim())),
            Err(_) => Build::Host,
        }
    }

    /// `hack/in-root.sh ROOT DIR` (nothing for the host's FRR): what runs one of the
    /// build's programs for the instance in `dir`.
    fn prefix(&self, dir: &Path) -> Vec<std::ffi::OsString> {
        match self {
            Build::Host => Vec::new(),
            Build::Root(root) => vec![
                paths::repo().join("hack/in-root.sh").into(),
                root.into(),
                dir.into(),
            ],
        }
    }

    /// A command that runs `program` of the build for the instance in `dir`, inside `ns`
    /// when given (the namespace is entered first: the root's /run has no namespaces).
    fn command(&self, ns: Option<&Netns>, dir: &Path, program: &str) -> Command {
        let mut words = self.prefix(dir);
        words.push(program.into());
        let (first, rest) = words.split_first().expect("a program");
        let mut command = match ns {
            Some(ns) => ns.command(first),
            None => Command::new(first),
        };
        command.args(rest);
        command
    }

    /// The file-system root the build's programs see.
    fn root(&self) -> &Path {
        match self {
            Build::Host => Path::new("/"),
            Build::Root(root) => root,
        }
    }

    /// The build's `frr` user and group, as its own `/etc/passwd` has them.
    fn frr_user(&self) -> Result<(Uid, Gid)> {
        let passwd = self.root().join("etc/passwd");
        let text = std::fs::read_to_string(&passwd)
            .with_context(|| format!("reading {}", passwd.display()))?;
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[0] == "frr")
            .and_then(|f| {
                Some((
                    Uid::from_raw(f[2].parse().ok()?),
                    Gid::from_raw(f[3].parse().ok()?),
                ))
            })
            .with_context(|| format!("no user frr in {} (is FRR installed?)", passwd.display()))
    }

    /// The daemons of an instance in start order: mgmtd first where the build has it (FRR
    /// 10 configures zebra and staticd through it).
    pub fn daemons(&self) -> Vec<&'static str> {
        let mut daemons = Vec::with_capacity(5);
        if self.root().join("usr/lib/frr/mgmtd").exists() {
            daemons.push("mgmtd");
        }
        daemons.extend(DAEMONS);
        daemons
    }

    /// Whether `daemon`'s `--help` lists `flag`: the flags differ between versions (FRR 10's
    /// mgmtd and staticd take no `-f`, its bfdd no `--bfdctl`).
    fn takes(&self, dir: &Path, daemon: &str, flag: &str) -> Result<bool> {
        let out = self
            .command(None, dir, &format!("/usr/lib/frr/{daemon}"))
            .arg("--help")
            .output()
            .with_context(|| format!("running {daemon} --help"))?;
        Ok(String::from_utf8_lossy(&out.stdout).contains(flag)
            || String::from_utf8_lossy(&out.stderr).contains(flag))
    }
}

/// A running FRR instance.
#[derive(Debug)]
pub struct Frr {
    // Dropped first: the daemons stop before anything else goes.
    daemons: Vec<(String, Process)>,
    build: Build,
    dir: PathBuf,
    run: PathBuf,
    etc: PathBuf,
    netns: String,
}

fn owned_by(path: &Path, (uid, gid): (Uid, Gid)) -> Result<()> {
    chown(path, Some(uid), Some(gid)).with_context(|| format!("chown frr {}", path.display()))
}

/// Starts one daemon of the instance in `dir` (state under `dir/run`), in `ns`, and waits for
/// its vty socket. Its configuration is empty (`-f /dev/null`): configuration is typed in.
pub fn spawn_daemon(ns: &Netns, dir: &Path, daemon: &str) -> Result<Process> {
    let build = Build::of_instance(dir);
    let run = dir.join("run");
    let mut command = build.command(Some(ns), dir, &format!("/usr/lib/frr/{daemon}"));
    command
        .args(["-F", "traditional", "-u", "frr", "-g", "frr", "-P", "0"])
        .arg("-i")
        .arg(run.join(format!("{daemon}.pid")))
        .arg("--vty_socket")
        .arg(&run)
        .arg("-z")
        .arg(run.join("zserv.api"))
        .arg("--log")
        .arg(format!(
            "file:{}",
            run.join(format!("{daemon}.log")).display()
        ));
    if build.takes(dir, daemon, "--config_file")? {
        command.args(["-f", "/dev/null"]);
    }
    match daemon {
        "zebra" => {
            command.args(["-s", "90000000"]);
        }
        "bfdd" if build.takes(dir, daemon, "--bfdctl")? => {
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
    /// Starts the daemons of `build` in `ns`, keeping their state under `dir/{run,etc}`.
    pub fn start(ns: &Netns, dir: &Path, build: &Build) -> Result<Frr> {
        let run = dir.join("run");
        let etc = dir.join("etc");
        for d in [dir, &run, &etc] {
            std::fs::create_dir_all(d)?;
        }
        let user = build.frr_user()?;
        owned_by(&run, user)?;
        owned_by(&etc, user)?;
        std::fs::write(etc.join("vtysh.conf"), "")?;
        owned_by(&etc.join("vtysh.conf"), user)?;
        if let Build::Root(root) = build {
            std::fs::write(dir.join("root"), format!("{}\n", root.display()))?;
            write_wrappers(dir, build)?;
        }
        let mut frr = Frr {
            daemons: Vec::new(),
            build: build.clone(),
            dir: dir.to_path_buf(),
            run,
            etc,
            netns: ns.name().to_string(),
        };
        for daemon in build.daemons() {
            let process = spawn_daemon(ns, dir, daemon)?;
            frr.daemons.push((daemon.to_string(), process));
        }
        Ok(frr)
    }

    /// A handle on an instance started elsewhere (its directory `dir`, in namespace
    /// `netns`), for vtysh and loading configuration.
    pub fn client(dir: &Path, netns: &str) -> Frr {
        Frr {
            daemons: Vec::new(),
            build: Build::of_instance(dir),
            dir: dir.to_path_buf(),
            run: dir.join("run"),
            etc: dir.join("etc"),
            netns: netns.to_string(),
        }
    }

    /// Stops daemon `daemon` (by PID) and starts it again, empty, as a supervisor would.
    pub fn restart_daemon(&mut self, ns: &Netns, daemon: &str) -> Result<()> {
        let at = self
            .daemons
            .iter()
            .position(|(d, _)| d == daemon)
            .with_context(|| format!("no {daemon} started here"))?;
        drop(self.daemons.remove(at));
        let process = spawn_daemon(ns, &self.dir, daemon)?;
        self.daemons.insert(at, (daemon.to_string(), process));
        Ok(())
    }

    /// The build it runs.
    pub fn build(&self) -> &Build {
        &self.build
    }

    /// How ferrolb's applier reaches this instance: its sockets and configuration, and the
    /// vtysh and frr-reload.py of its own FRR version.
    pub fn target(&self) -> ferrolb::frr::apply::FrrTarget {
        let mut target = ferrolb::frr::apply::FrrTarget {
            vty_dir: self.run.clone(),
            config_dir: self.etc.clone(),
            ..Default::default()
        };
        if let Build::Root(_) = self.build {
            target.vtysh = self.dir.join("bin/vtysh");
            target.reload_script = self.dir.join("bin/frr-reload.py");
        }
        target
    }

    /// `show running-config`, normalised as ferrolb compares it with its rendering.
    pub fn running_config(&self) -> Result<String> {
        Ok(ferrolb::frr::running::normalise_running(
            &self.vtysh("show running-config")?,
        ))
    }

    /// Daemon `daemon`'s own `show running-config` (`vtysh -d`), not vtysh's merged view, in
    /// which another daemon's copy of a line hides its loss.
    pub fn daemon_running_config(&self, daemon: &str) -> Result<String> {
        self.run_vtysh(&["-d", daemon, "-c", "show running-config"])
    }

    /// Leaves the daemons running beyond this object; returns their PIDs.
    pub fn keep(self) -> Vec<u32> {
        self.daemons.into_iter().map(|(_, p)| p.keep()).collect()
    }

    fn vtysh_command(&self) -> Command {
        let mut command = self.build.command(None, &self.dir, "vtysh");
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
        owned_by(&path, self.build.frr_user()?)?;
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
        self.run_vtysh(&["-c", command])
    }

    /// Runs vtysh with `args`; returns its output.
    fn run_vtysh(&self, args: &[&str]) -> Result<String> {
        let out = self
            .vtysh_command()
            .args(args)
            .output()
            .context("running vtysh")?;
        if !out.status.success() {
            bail!(
                "vtysh {args:?} in {}: {}{}",
                self.netns,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
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

/// `bin/vtysh` and `bin/frr-reload.py` of a 10.3 instance: the root's programs, run through
/// `hack/in-root.sh` from this machine. frr-reload.py runs inside the root and calls vtysh
/// from the `--bindir` it is given (this `bin/`), so the vtysh wrapper runs the root's vtysh
/// directly when it finds itself there.
fn write_wrappers(dir: &Path, build: &Build) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let prefix: Vec<String> = build
        .prefix(dir)
        .iter()
        .map(|w| format!("'{}'", w.to_string_lossy()))
        .collect();
    let prefix = prefix.join(" ");
    let scripts = [
        (
            "vtysh",
            format!(
                "#!/bin/sh\nif [ -e /etc/ferrolb-rootfs ]; then exec /usr/bin/vtysh \"$@\"; fi\nexec {prefix} /usr/bin/vtysh \"$@\"\n"
            ),
        ),
        (
            "frr-reload.py",
            format!("#!/bin/sh\nexec {prefix} /usr/lib/frr/frr-reload.py \"$@\"\n"),
        ),
    ];
    for (name, text) in scripts {
        let path = bin.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}
