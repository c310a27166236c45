//! What every long-running component does the same way: start-up (client, health and metrics
//! listeners), the clock as the API writes it, gathering bursts of changes, retry waits, and
//! glibc's memory tuning.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::http::HealthAndMetrics;

/// The first wait before a failed step is tried again; it doubles up to [`RETRY_MAX`].
pub(crate) const RETRY_MIN: Duration = Duration::from_millis(200);
/// The longest wait between tries.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(30);

/// The longest wait between tries of a step a daemon cannot start without.
pub(crate) const START_RETRY_MAX: Duration = Duration::from_secs(5);

/// Runs `step` (one the daemon cannot start without: asking the API server what it serves,
/// setting up the Lease) until it succeeds, waiting [`RETRY_MIN`] and doubling up to
/// [`START_RETRY_MAX`] between tries, with a warning naming `what` each time; `None` once
/// `shutdown` is cancelled. A daemon started while the API server is away (restarted with it,
/// or on a node cut off from it) waits for it instead of exiting, so it is ready the moment
/// the API server is back rather than after a supervisor's back-off.
pub(crate) async fn until_done<T, E, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut step: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut wait = RETRY_MIN;
    let mut tries: u32 = 0;
    loop {
        let outcome = tokio::select! {
            outcome = step() => outcome,
            () = shutdown.cancelled() => return None,
        };
        match outcome {
            Ok(value) => {
                if tries > 0 {
                    tracing::info!(what, tries = tries + 1, "done after retrying");
                }
                return Some(value);
            }
            Err(error) => {
                tries += 1;
                tracing::warn!(
                    what,
                    tries,
                    error = %error,
                    retry_in_ms = wait.as_millis() as u64,
                    "failed; retrying"
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return None,
        }
        wait = (wait * 2).min(START_RETRY_MAX);
    }
}

/// Hands memory the allocator holds but no longer uses back to the kernel. glibc keeps what
/// a burst freed (the first list of 10,000 objects, a pass over them) in its arenas, so the
/// resident set stays at the peak; after a trim it is what is live.
#[allow(unsafe_code)] // One libc call (other unsafe code: limit_malloc_arenas, and l2::socket).
pub(crate) fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers; it only shrinks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Limits glibc to two malloc arenas rather than one per core and thread: the daemons'
/// data is a few long-lived maps, and more arenas mostly hold memory already freed.
#[allow(unsafe_code)] // One libc call, as above.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt takes no pointers; it sets a parameter for arenas created later.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Waits out the rest of a burst after a change arrived: the next pass starts no sooner than
/// `window` after the last one ended. A change that comes after a quiet spell that long starts
/// a pass at once (a lone create is not kept waiting); one that comes sooner is part of a
/// burst, and the pass waits for the rest of the window to take more of it along.
pub(crate) async fn gather(last_pass: std::time::Instant, window: Duration) {
    tokio::time::sleep_until((last_pass + window).into()).await;
}

/// The current time, as the API writes it.
pub(crate) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// A daemon's metrics: created empty, registered once.
pub(crate) trait DaemonMetrics: Default {
    /// Registers every metric in `registry`.
    fn register(&self, registry: &mut Registry);
}

/// What [`start`] gives a daemon.
pub(crate) struct Started<M> {
    /// Its metrics, served from now on.
    pub metrics: Arc<M>,
    /// The Kubernetes client.
    pub client: Client,
    /// What `/readyz` reports; set once the caches have synced.
    pub ready: Arc<AtomicBool>,
}

/// What every long-running component does first: malloc's arenas limited, a Kubernetes
/// client from the in-cluster configuration or `KUBECONFIG`, and the health and metrics
/// listeners serving its metrics.
pub(crate) async fn start<M: DaemonMetrics>(
    listeners: &crate::http::Listeners,
    shutdown: &CancellationToken,
) -> anyhow::Result<Started<M>> {
    limit_malloc_arenas();
    let metrics = Arc::new(M::default());
    let client = Client::try_default()
        .await
        .context("no Kubernetes client configuration (in-cluster or KUBECONFIG)")?;
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    HealthAndMetrics::new(registry, Arc::clone(&ready))
        .serve_both(
            listeners.health,
            listeners.metrics,
            listeners
                .secure_metrics
                .as_ref()
                .map(|secure| (secure, &client)),
            shutdown,
        )
        .await?;
    Ok(Started {
        metrics,
        client,
        ready,
    })
}
