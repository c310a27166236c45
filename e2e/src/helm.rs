//! The pinned Helm 4 (`hack/k8s.sh`) as a user runs it, with its own files kept apart.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::netns::Netns;
use crate::paths;

/// `helm ARGS --kubeconfig KUBECONFIG`, with Helm's cache, configuration and data in `home`,
/// run inside network namespace `netns` when given (where the API server is reachable).
pub fn helm(
    kubeconfig: &Path,
    home: &Path,
    netns: Option<&Netns>,
    args: &[&str],
) -> Result<String> {
    let program = paths::k8s_tool("helm")?;
    let mut command = match netns {
        Some(ns) => ns.command(program),
        None => Command::new(program),
    };
    let out = command
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .context("running helm")?;
    if !out.status.success() {
        bail!(
            "helm {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
