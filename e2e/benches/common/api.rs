//! A Kubernetes API client in a lab's network namespace, for the benchmarks that talk to the
//! API server themselves (timing a request from the moment it leaves, not from a kubectl
//! process's start or exit).

use std::os::fd::AsFd as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Runs `work` with a client of `kubeconfig`, on a thread that has entered network namespace
/// `netns` (where the API server's address is reachable), on a runtime of its own.
pub(crate) fn with_client<T, F, Fut>(netns: &str, kubeconfig: &Path, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(kube::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (netns, kubeconfig) = (netns.to_string(), kubeconfig.to_path_buf());
    std::thread::spawn(move || {
        let path = format!("/run/netns/{netns}");
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering network namespace {netns}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let config = kube::Config::from_custom_kubeconfig(
                Kubeconfig::read_from(&kubeconfig)?,
                &KubeConfigOptions::default(),
            )
            .await?;
            work(kube::Client::try_from(config)?).await
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the API thread panicked"))?
}
