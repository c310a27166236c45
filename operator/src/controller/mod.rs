//! `ferrolb controller`: gives LoadBalancer Services their IPs.
//!
//! Flow: watches ([`cache`]) raise a change signal and note which Services changed; the
//! leader, after gathering a burst (see [`gather`]), runs one pass ([`reconcile`]): load the
//! configuration, plan allocation for the changed Services with the allocator kept from the
//! passes before, or over every Service after a relist or a pool change ([`plan`], pure), and
//! write the differences ([`writer`]). Standby replicas keep their caches warm and take over
//! when the Lease passes to them; before a new leader assigns anything, the pass rebuilds the
//! allocator from the statuses already in the cluster, so existing IPs are kept.
//!
//! Guarantees: only the Lease holder writes; a pass never runs before every cache has listed;
//! failed writes are retried with backoff; SIGTERM releases the Lease so a standby takes over
//! without waiting for it to expire.

pub(crate) mod cache;
pub(crate) mod metrics;
pub(crate) mod plan;
pub(crate) mod reconcile;
pub(crate) mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio_util::sync::CancellationToken;

use crate::config::LoadOptions;
use crate::shell::runtime::{RETRY_MAX, RETRY_MIN, Started, gather, now, start, until_done};
use crate::shell::watch::Changes;
use crate::views::ServiceScope;
use cache::Caches;
use metrics::Metrics;
use reconcile::Reconciler;
use writer::ApiWriter;

/// How the controller runs.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// ferrolb's namespace: configuration, Lease and ConfigurationState live there.
    pub namespace: String,
    /// The Services handled.
    pub scope: ServiceScope,
    /// This replica's name (its pod), for the Lease holder and Events.
    pub identity: Option<String>,
    /// This replica's pod UID; with `identity`, the pod owns the ConfigurationState.
    pub pod_uid: Option<String>,
    /// The Lease elected on.
    pub lease_name: String,
    /// How long a Lease holds without renewal.
    pub lease_duration: Duration,
    /// How long before expiry the holder renews.
    pub lease_grace: Duration,
    /// Where the probes and metrics are served.
    pub listeners: crate::http::Listeners,
    /// How long a burst of changes is gathered before a pass (see `controller::gather`).
    pub coalesce: Duration,
    /// The validating webhook; `None` to serve none.
    pub webhook: Option<crate::webhook::WebhookOptions>,
}

/// The Lease election the controller takes part in.
pub(crate) fn lease(client: Client, options: &Options) -> LeaseManagerBuilder {
    let builder = LeaseManagerBuilder::new(client, &options.lease_name)
        .with_namespace(&options.namespace)
        .with_duration(options.lease_duration.as_secs().max(1))
        .with_grace(options.lease_grace.as_secs())
        .with_field_manager(format!("{}-lease", writer::FIELD_MANAGER));
    match &options.identity {
        Some(identity) => builder.with_identity(identity),
        None => builder,
    }
}

/// Watches the Lease and signals each time it is left without a holder (a leader released it
/// on a clean stop), so a standby need not wait for the old term to expire.
fn watch_releases(client: Client, options: &Options) -> Arc<tokio::sync::Notify> {
    use futures::StreamExt;
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::runtime::{WatchStreamExt, watcher};
    let released = Arc::new(tokio::sync::Notify::new());
    let signal = Arc::clone(&released);
    let api: kube::Api<Lease> = kube::Api::namespaced(client, &options.namespace);
    let config =
        watcher::Config::default().fields(&format!("metadata.name={}", options.lease_name));
    tokio::spawn(async move {
        let stream = crate::shell::watch::relist_at_once(watcher(api, config), "Lease")
            .backoff(crate::shell::watch::WatchRetry::default())
            .applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Ok(lease) = event
                && lease
                    .spec
                    .as_ref()
                    .is_none_or(|s| s.holder_identity.is_none())
            {
                signal.notify_one();
            }
        }
    });
    released
}

/// Runs the controller until `shutdown` is cancelled.
pub(crate) async fn run(options: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Started {
        metrics,
        client,
        ready,
    } = start::<Metrics>(&options.listeners, &shutdown).await?;

    let changes = Arc::new(Changes::new(metrics.client.updates.clone()));
    let caches = Caches::start(&client, &options.namespace, &changes);

    let Some(manager) = until_done("setting up the Lease", &shutdown, || {
        lease(client.clone(), &options).build()
    })
    .await
    else {
        return Ok(());
    };
    let (mut leading, mut lease_task) = manager.watch().await;
    let released = watch_releases(client.clone(), &options);

    tokio::select! {
        () = caches.ready() => {}
        () = shutdown.cancelled() => return Ok(()),
    }
    ready.store(true, Ordering::Release);
    tracing::info!("caches synced");
    tokio::spawn(ensure_memberlist_secret(
        client.clone(),
        options.namespace.clone(),
        shutdown.clone(),
    ));
    if let Some(webhook) = options.webhook.clone() {
        let served = caches.clone();
        let load = LoadOptions {
            namespace: options.namespace.clone(),
        };
        let (client, shutdown) = (client.clone(), shutdown.clone());
        tokio::spawn(async move {
            let objects = std::sync::Arc::new(move || served.configuration());
            if let Err(error) = crate::webhook::run(client, webhook, load, objects, shutdown).await
            {
                tracing::error!(error = format!("{error:#}"), "the webhook stopped");
            }
        });
    }

    let owner = options
        .identity
        .clone()
        .zip(options.pod_uid.clone())
        .map(|(name, uid)| OwnerReference {
            api_version: "v1".to_string(),
            kind: "Pod".to_string(),
            name,
            uid,
            ..OwnerReference::default()
        });
    let writer = ApiWriter::new(
        client.clone(),
        &options.namespace,
        options.identity.clone(),
        owner,
    );
    let mut reconciler = Reconciler::new(
        LoadOptions {
            namespace: options.namespace.clone(),
        },
        options.scope.clone(),
    );

    'terms: loop {
        // Standby: wait for the Lease.
        while !*leading.borrow_and_update() {
            tokio::select! {
                changed = leading.changed() => if changed.is_err() {
                    anyhow::bail!("the Lease task ended");
                },
                () = released.notified() => {
                    // The Lease manager would only look again when the old term expires;
                    // a fresh one contends at once.
                    tracing::info!(lease = %options.lease_name, "Lease released by its holder; contending");
                    lease_task.abort();
                    let Some(manager) = until_done("setting up the Lease", &shutdown, || {
                        lease(client.clone(), &options).build()
                    })
                    .await
                    else {
                        break 'terms;
                    };
                    (leading, lease_task) = manager.watch().await;
                }
                () = shutdown.cancelled() => break 'terms,
            }
        }
        tracing::info!(lease = %options.lease_name, "leading");
        reconciler.lead();
        let mut retry = RETRY_MIN;
        loop {
            let started = std::time::Instant::now();
            let report = reconciler.pass(&caches, &writer, &metrics, &now()).await;
            for failure in &report.failures {
                metrics.client.update_errors.inc();
                if failure.is_conflict() {
                    tracing::debug!(error = %failure, "write conflicted; deciding again");
                } else {
                    tracing::warn!(error = %failure, "write failed");
                }
            }
            tracing::debug!(
                assigned = report.assigned,
                pending = report.pending,
                written = report.written,
                events = report.events,
                stale = report.stale,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "pass done"
            );
            let done = std::time::Instant::now();
            let again = if report.failures.is_empty() {
                retry = RETRY_MIN;
                None
            } else {
                let wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
                Some(wait)
            };
            tokio::select! {
                () = changes.wait() => gather(done, options.coalesce).await,
                () = tokio::time::sleep(again.unwrap_or(RETRY_MAX)), if again.is_some() => {}
                changed = leading.changed() => {
                    if changed.is_err() {
                        anyhow::bail!("the Lease task ended");
                    }
                    if !*leading.borrow_and_update() {
                        tracing::warn!(lease = %options.lease_name, "lost the Lease; standing by");
                        continue 'terms;
                    }
                }
                () = shutdown.cancelled() => break 'terms,
            }
        }
    }
    // Closing the channel makes the Lease task release the Lease.
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("Lease released"),
        Ok(Ok(Err(error))) => tracing::warn!(%error, "releasing the Lease failed"),
        Ok(Err(error)) => tracing::warn!(%error, "the Lease task failed"),
        Err(_) => tracing::warn!("releasing the Lease timed out"),
    }
    Ok(())
}

/// The Secret whose `secretkey` authenticates the speakers' gossip (MetalLB's name and key).
pub(crate) const MEMBERLIST_SECRET: &str = "memberlist";

/// Creates the gossip key Secret when it does not exist: 128 random bytes, as MetalLB's
/// install does. An existing Secret is never changed (a rotated key would split the
/// speakers until they all restart). Retried until it exists or `shutdown`.
pub(crate) async fn ensure_memberlist_secret(
    client: Client,
    namespace: String,
    shutdown: CancellationToken,
) {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::PostParams;
    use rand::RngExt as _;

    let api: kube::Api<Secret> = kube::Api::namespaced(client, &namespace);
    let mut wait = Duration::from_millis(500);
    loop {
        let result: Result<(), kube::Error> = match api.get_opt(MEMBERLIST_SECRET).await {
            Ok(Some(_)) => return,
            Ok(None) => {
                let mut key = vec![0u8; 128];
                rand::rng().fill(&mut key[..]);
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(MEMBERLIST_SECRET.to_string()),
                        namespace: Some(namespace.clone()),
                        ..Default::default()
                    },
                    data: Some([("secretkey".to_string(), ByteString(key))].into()),
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &secret).await {
                    Ok(_) => {
                        tracing::info!(secret = %format!("{namespace}/{MEMBERLIST_SECRET}"), "created the speakers' gossip key");
                        return;
                    }
                    Err(kube::Error::Api(status)) if status.code == 409 => return,
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "creating the gossip key Secret; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}
