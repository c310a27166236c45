//! How to reach one FRR instance: its paths, its vtysh and frr-reload.py, and the files
//! written for it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::ApplyError;
use crate::frr::running::normalise_running;

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

    pub(super) fn vtysh(&self) -> Command {
        let mut command = Command::new(&self.vtysh);
        command
            .arg("--vty_socket")
            .arg(&self.vty_dir)
            .arg("--config_dir")
            .arg(&self.config_dir)
            .kill_on_drop(true);
        command
    }

    /// The file `frr-reload.py` loads: the whole rendering, where frr.conf holds every
    /// neighbour's BFD back ([`crate::frr::bfd_hold::boot_text`]).
    pub fn reload_file(&self) -> PathBuf {
        self.config_dir.join("ferrolb-reload.conf")
    }

    /// `frr-reload.py --reload` of `file`.
    pub fn reload_command(&self, file: &Path) -> std::process::Command {
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
            .arg(file);
        command
    }

    /// Writes `text` as [`FrrTarget::reload_file`] and runs `frr-reload.py --reload` of it;
    /// returns its output.
    pub async fn reload(&self, text: &str) -> Result<String, ApplyError> {
        let file = self.reload_file();
        write_atomically(&file, text)?;
        let mut command = Command::from(self.reload_command(&file));
        command.kill_on_drop(true);
        output(command, "frr-reload.py").await
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

pub(super) async fn output(mut command: Command, what: &str) -> Result<String, ApplyError> {
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
