//! A process of the lab, with its output in a log file, ended by PID (SIGTERM, then SIGKILL)
//! when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running process.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    /// What started it (through `setsid`), to start it again.
    command: Command,
    /// The `cgroup.procs` it is moved into, again when started again.
    cgroup: Option<PathBuf>,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`, in a session of its own
    /// (through `setsid`, which execs in place, so the PID is the program's): a lab left
    /// running does not die with the terminal that started it.
    pub fn spawn(name: &str, command: Command, log: &Path) -> Result<Process> {
        let mut command = in_own_session(&command);
        let child = start(name, &mut command, log)?;
        Ok(Process {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            command,
            cgroup: None,
        })
    }

    /// Moves it (all its threads) into the cgroup whose `cgroup.procs` is `procs`, now and
    /// whenever it is started again.
    pub fn move_to_cgroup(&mut self, procs: &Path) -> Result<()> {
        std::fs::write(procs, self.child.id().to_string())
            .with_context(|| format!("moving {} into {}", self.name, procs.display()))?;
        self.cgroup = Some(procs.to_path_buf());
        Ok(())
    }

    /// Starts it again as it was started, once it has ended (killed by [`Process::kill`]);
    /// its output goes on in the same log.
    pub fn start_again(&mut self) -> Result<()> {
        if self.running() {
            anyhow::bail!("{} (PID {}) still runs", self.name, self.child.id());
        }
        self.child = start(&self.name, &mut self.command, &self.log)?;
        if let Some(procs) = self.cgroup.clone() {
            self.move_to_cgroup(&procs)?;
        }
        Ok(())
    }

    /// Leaves it running beyond this object (for a lab that stays up); returns its PID.
    pub fn keep(self) -> u32 {
        let pid = self.child.id();
        std::mem::forget(self);
        pid
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of its log.
    pub fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn signal(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns how it ended.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status);
        }
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()
    }

    /// SIGKILL at once (a crash, as far as the rest of the lab can tell).
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.signal(Signal::SIGKILL);
        self.child
            .wait()
            .with_context(|| format!("waiting for {}", self.name))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(5));
    }
}

/// Runs `command` to its end with `stdin` piped in (nothing when `None`); returns its stdout,
/// or an error naming it as `what`, with its stderr.
pub fn run_with_input(command: &mut Command, stdin: Option<&str>, what: &str) -> Result<String> {
    use std::io::Write;
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {what}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts `command` with stdout and stderr appended to `log`.
fn start(name: &str, command: &mut Command, log: &Path) -> Result<Child> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {name}: {command:?}"))
}

fn in_own_session(command: &Command) -> Command {
    let mut wrapped = Command::new("setsid");
    wrapped.arg(command.get_program()).args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// Ends a process left running by [`Process::keep`]: SIGTERM, then SIGKILL after `grace`.
pub fn stop_pid(pid: u32, grace: Duration) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    let pid = Pid::from_raw(raw);
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        // Gone, or a zombie waiting for its new parent to reap it.
        let state = std::fs::read_to_string(format!("/proc/{raw}/stat")).unwrap_or_default();
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if state.is_empty() || zombie {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(pid, Signal::SIGKILL);
}

/// Polls `probe` every 50 ms until it returns `Some`, or fails after `timeout` with the last
/// error or `what`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last = Some(error),
        }
        if Instant::now() >= deadline {
            return Err(match last {
                Some(error) => error.context(format!("timed out after {timeout:?}: {what}")),
                None => anyhow::anyhow!("timed out after {timeout:?}: {what}"),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
