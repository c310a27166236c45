//! Where the lab's binaries and scratch directories are.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The environment variable `name` parsed as a `T`; `None` when unset or unreadable.
pub fn env_parsed<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// The `ferrolb` binary built beside the running test (`FERROLB_BIN` overrides).
pub fn ferrolb() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("FERROLB_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating the test binary")?;
    // target/<profile>/deps/<test> → target/<profile>/ferrolb
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test binary has no target directory")?;
    let path = profile_dir.join("ferrolb");
    if !path.is_file() {
        bail!(
            "{} is missing; build it first (cargo build -p ferrolb) or set FERROLB_BIN",
            path.display()
        );
    }
    Ok(path)
}

/// What `hack/SCRIPT build` prints (a path; the script builds once per machine and caches),
/// or the path in environment variable `var` when set.
fn built(script: &str, var: &str) -> Result<PathBuf> {
    built_with(script, "build", var)
}

/// What `hack/SCRIPT SUBCOMMAND` prints, or the path in environment variable `var` when set.
pub fn built_with(script: &str, subcommand: &str, var: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Ok(PathBuf::from(path));
    }
    let script = repo().join("hack").join(script);
    let out = Command::new("bash")
        .arg(&script)
        .arg(subcommand)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {subcommand} failed:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The directory holding the pinned Kubernetes binaries, etcd and helm: `FERROLB_K8S_DIR`,
/// else what `hack/k8s.sh build` prints.
pub fn k8s_bin() -> Result<PathBuf> {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.clone());
    }
    let dir = built("k8s.sh", "FERROLB_K8S_DIR")?;
    Ok(DIR.get_or_init(|| dir).clone())
}

/// The Debian 13 root file system FRR 10.3 runs from: `FERROLB_FRR_ROOT`, else what
/// `hack/rootfs.sh build` prints.
pub fn frr10_root() -> Result<PathBuf> {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.clone());
    }
    let dir = built("rootfs.sh", "FERROLB_FRR_ROOT")?;
    Ok(DIR.get_or_init(|| dir).clone())
}

/// The archive of the image's root file system (Debian 13 with the packages of
/// `deploy/image/`): `FERROLB_IMAGE_ROOT`, else what `hack/rootfs.sh image` prints.
pub fn image_root() -> Result<PathBuf> {
    built_with("rootfs.sh", "image", "FERROLB_IMAGE_ROOT")
}

/// The Kubernetes version `hack/tools` pins (`v1.37.2`): the control plane must report it.
pub fn k8s_version() -> Result<String> {
    let go_mod = std::fs::read_to_string(repo().join("hack/tools/go.mod"))
        .context("reading hack/tools/go.mod")?;
    go_mod
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("k8s.io/kubernetes"))
                .then(|| words.next())
                .flatten()
                .filter(|v| v.starts_with('v'))
                .map(str::to_string)
        })
        .context("hack/tools/go.mod pins no k8s.io/kubernetes version")
}

/// A program from [`k8s_bin`] (`kubectl`, `helm`, `kube-apiserver`, …).
pub fn k8s_tool(name: &str) -> Result<PathBuf> {
    Ok(k8s_bin()?.join(name))
}

/// A fresh scratch directory for one lab, removed by [`Scratch`]'s drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `/tmp/ferrolb-e2e-<name>-<pid>-<n>`.
    pub fn new(name: &str) -> Result<Scratch> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ferrolb-e2e-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("FERROLB_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
