//! The HTTP endpoints every long-running component serves: `/metrics` in the OpenMetrics
//! text format, `/healthz` (the process answers) and `/readyz` (its caches have synced).
//!
//! Health and metrics may listen on separate addresses, as MetalLB's do (17472 and 9120);
//! each listener serves all three paths, so a single one is enough for a lab. With
//! [`secure::SecureMetrics`], `/metrics` is served on the metrics address alone, over HTTPS,
//! to callers the API server allows, and the health address serves only the probes.
//!
//! Every HTTP listener of ferrolb (these and the webhook) has [`Limits`]: a client that never
//! finishes its headers is disconnected, a request that takes too long (a body trickled in)
//! is answered 408, and a body too large is answered 413, so no client can hold connections
//! or memory with requests it never completes.

pub mod secure;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

/// Where a daemon serves its probes and metrics, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listeners {
    /// `/healthz` and `/readyz`, and `/metrics` unless it is secured.
    pub health: SocketAddr,
    /// `/metrics` too; `None` for nowhere else.
    pub metrics: Option<SocketAddr>,
    /// `/metrics` over HTTPS to callers the API server allows, on `metrics` alone; `None`
    /// for plain HTTP.
    pub secure_metrics: Option<secure::SecureMetrics>,
}

/// What one client may take of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Time to send a request's headers; the connection is closed after it.
    pub headers: Duration,
    /// Time for a whole request, its body included; answered 408 after it.
    pub request: Duration,
    /// The largest request body, in bytes; a larger one is answered 413.
    pub body: usize,
}

impl Limits {
    /// `/healthz`, `/readyz` and `/metrics`: GET requests from probes and scrapers.
    pub(crate) const PROBES: Limits = Limits {
        headers: Duration::from_secs(10),
        request: Duration::from_secs(10),
        body: 64 * 1024,
    };

    /// The admission webhook: the API server waits at most 30 s for an answer (the chart
    /// sets `timeoutSeconds: 5`), and an AdmissionReview holds at most the object and its
    /// old version, each under the API server's 3 MiB request limit.
    pub(crate) const WEBHOOK: Limits = Limits {
        headers: Duration::from_secs(10),
        request: Duration::from_secs(10),
        body: 8 * 1024 * 1024,
    };

    /// `router` with the request time and body size limits.
    pub(crate) fn on(self, router: Router) -> Router {
        router
            .layer(DefaultBodyLimit::max(self.body))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                self.request,
            ))
    }

    /// A listener's connection settings with the header time limit.
    pub(crate) fn connections(self, builder: &mut Builder<TokioExecutor>) {
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.headers);
    }
}

/// What `/metrics`, `/healthz` and `/readyz` report: the metrics registry and whether the
/// caches have synced.
#[derive(Clone, Debug)]
pub(crate) struct HealthAndMetrics {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    limits: Limits,
}

/// The content type of the OpenMetrics text format.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl HealthAndMetrics {
    /// The metrics of `registry`, reporting ready once `ready` is set.
    pub(crate) fn new(registry: Registry, ready: Arc<AtomicBool>) -> HealthAndMetrics {
        HealthAndMetrics {
            registry: Arc::new(registry),
            ready,
            limits: Limits::PROBES,
        }
    }

    /// The probes, under the limits.
    fn probes(&self) -> Router {
        self.limits.on(Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(self.clone()))
    }

    /// `/metrics`, under the limits.
    fn metrics(&self) -> Router {
        self.limits.on(Router::new()
            .route("/metrics", get(metrics))
            .with_state(self.clone()))
    }

    /// The router serving the three paths, under its limits.
    pub(crate) fn router(&self) -> Router {
        self.probes().merge(self.metrics())
    }

    /// Serves on `health` and, when given and different, on `metrics` too, until `shutdown`;
    /// logs the bound addresses. With `secure` (and the client its gate asks), `/metrics`
    /// is served on `metrics` alone, over HTTPS, to callers the API server allows.
    pub(crate) async fn serve_both(
        &self,
        health: SocketAddr,
        metrics: Option<SocketAddr>,
        secure: Option<(&secure::SecureMetrics, &kube::Client)>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let Some((secure, client)) = secure else {
            let bound = self
                .serve(health, shutdown.clone())
                .await
                .with_context(|| format!("binding the health endpoint {health}"))?;
            tracing::info!(health = %bound, "serving /healthz /readyz /metrics");
            if let Some(addr) = metrics.filter(|a| *a != health) {
                let bound = self
                    .serve(addr, shutdown.clone())
                    .await
                    .with_context(|| format!("binding the metrics endpoint {addr}"))?;
                tracing::info!(%bound, "serving /metrics");
            }
            return Ok(());
        };
        let Some(addr) = metrics.filter(|a| *a != health) else {
            anyhow::bail!(
                "--metrics-secure needs a --metrics-addr of its own (not none, not the health address {health})"
            );
        };
        let tls = secure::tls(secure, shutdown).await?;
        let bound = serve_router(health, self.probes(), self.limits, None, shutdown.clone())
            .await
            .with_context(|| format!("binding the health endpoint {health}"))?;
        tracing::info!(health = %bound, "serving /healthz /readyz");
        let guarded = self.metrics().layer(axum::middleware::from_fn_with_state(
            secure::Gate::new(client.clone()),
            secure::guard,
        ));
        let bound = serve_router(addr, guarded, self.limits, Some(tls), shutdown.clone())
            .await
            .with_context(|| format!("binding the metrics endpoint {addr}"))?;
        tracing::info!(%bound, "serving /metrics over HTTPS to callers allowed get on /metrics");
        Ok(())
    }

    /// Binds `addr` and serves the three paths until `shutdown`; returns the bound address
    /// once bound (port 0 picks a free one). While another process holds the port
    /// (MetalLB's speaker still leaving the node during a switch, say), it waits for it,
    /// saying so every [`BIND_RETRY`].
    pub(crate) async fn serve(
        &self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        serve_router(addr, self.router(), self.limits, None, shutdown).await
    }
}

/// Serves `router` on `addr` (over TLS with `tls`) until `shutdown`, as
/// [`HealthAndMetrics::serve`] says.
async fn serve_router(
    addr: SocketAddr,
    router: Router,
    limits: Limits,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = bind_when_free(addr, &shutdown).await?.into_std()?;
    let bound = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let service = router.into_make_service();
    let server: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> =
        match tls {
            Some(tls) => {
                let mut server = axum_server::tls_rustls::from_tcp_rustls(listener, tls)?;
                limits.connections(server.http_builder());
                Box::pin(server.handle(handle.clone()).serve(service))
            }
            None => {
                let mut server = axum_server::from_tcp(listener)?;
                limits.connections(server.http_builder());
                Box::pin(server.handle(handle.clone()).serve(service))
            }
        };
    tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.graceful_shutdown(Some(Duration::from_secs(1)));
    });
    tokio::spawn(async move {
        if let Err(error) = server.await {
            tracing::error!(%error, "http endpoint stopped");
        }
    });
    Ok(bound)
}

/// How often a port held by another process is tried again.
pub(crate) const BIND_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

async fn bind_when_free(
    addr: SocketAddr,
    shutdown: &CancellationToken,
) -> std::io::Result<TcpListener> {
    loop {
        match TcpListener::bind(addr).await {
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                tracing::warn!(
                    %addr,
                    "the address is in use by another process (another speaker on this node, \
                     such as MetalLB's, still leaving?); waiting for it"
                );
                tokio::select! {
                    () = tokio::time::sleep(BIND_RETRY) => {}
                    () = shutdown.cancelled() => return Err(error),
                }
            }
            other => return other,
        }
    }
}

async fn metrics(State(endpoints): State<HealthAndMetrics>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &endpoints.registry) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], body),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics could not be encoded\n".to_string(),
        ),
    }
}

async fn readyz(State(endpoints): State<HealthAndMetrics>) -> impl IntoResponse {
    if endpoints.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_port_held_by_another_process_is_waited_for_until_shutdown() {
        let endpoints = HealthAndMetrics::new(Registry::default(), Arc::new(AtomicBool::new(true)));
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let waiting = {
            let (endpoints, shutdown) = (endpoints.clone(), shutdown.clone());
            tokio::spawn(async move { endpoints.serve(addr, shutdown).await })
        };
        tokio::time::sleep(BIND_RETRY / 2).await;
        assert!(!waiting.is_finished(), "it gave up on a held port");
        drop(holder);
        let bound = tokio::time::timeout(BIND_RETRY * 3, waiting)
            .await
            .expect("still waiting after the port was freed")
            .unwrap()
            .unwrap();
        assert_eq!(bound, addr);
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));

        // Told to stop while waiting, it stops with the bind error.
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let held = holder.local_addr().unwrap();
        let stop = CancellationToken::new();
        let waiting = {
            let (endpoints, stop) = (endpoints.clone(), stop.clone());
            tokio::spawn(async move { endpoints.serve(held, stop).await })
        };
        stop.cancel();
        let error = waiting.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let mut endpoints =
            HealthAndMetrics::new(Registry::default(), Arc::new(AtomicBool::new(true)));
        endpoints.limits.headers = Duration::from_millis(200);
        let shutdown = CancellationToken::new();
        let addr = endpoints
            .serve("127.0.0.1:0".parse().unwrap(), shutdown.clone())
            .await
            .unwrap();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest))
            .await
            .expect("the connection is still open 3 s later");
        assert!(closed.is_ok() || rest.is_empty(), "{closed:?}");
        // Others are served meanwhile and after.
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn readyz_follows_the_flag_and_metrics_are_openmetrics() {
        let mut registry = Registry::default();
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register("ferrolb_test_things", "things", counter.clone());
        counter.inc();
        let ready = Arc::new(AtomicBool::new(false));
        let endpoints = HealthAndMetrics::new(registry, ready.clone());
        let shutdown = CancellationToken::new();
        let addr = endpoints
            .serve("127.0.0.1:0".parse().unwrap(), shutdown.clone())
            .await
            .unwrap();
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        ready.store(true, Ordering::Release);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains(OPENMETRICS), "{metrics}");
        assert!(metrics.contains("ferrolb_test_things_total 1"), "{metrics}");
        assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
        shutdown.cancel();
    }
}
