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
use crate::shell::watch::{WATCH_RETRY_MAX, WatchRetry};

/// The first wait before a failed step is tried again; it doubles up to [`RETRY_MAX`].
pub(crate) const RETRY_MIN: Duration = Duration::from_millis(200);
/// The longest wait between tries.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(30);

/// Runs `step` (one the daemon cannot start without: asking the API server what it serves,
/// setting up the Lease) until it succeeds, waiting between tries as a failed watch does
/// ([`WatchRetry`]: at most 2 s), with a warning naming `what` each time; `None` once
/// `shutdown` is cancelled. A daemon started while the API server is away (restarted with it,
/// or on a node cut off from it) waits for it instead of exiting, so it is ready the moment
/// the API server is back rather than after a supervisor's back-off — or after a long wait
/// of its own: with waits doubling up to 5 s, a speaker started during an API server restart
/// asked again up to 5 s after the server was back, and announced nothing new until then.
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
    let mut waits = WatchRetry::default();
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
                let wait = waits.next().unwrap_or(WATCH_RETRY_MAX);
                tracing::warn!(
                    what,
                    tries,
                    error = %error,
                    retry_in_ms = wait.as_millis() as u64,
                    "failed; retrying"
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => return None,
                }
            }
        }
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

/// Limits glibc to one malloc arena rather than one per core and thread: the daemons'
/// data is a few long-lived maps, and a second arena mostly holds memory already freed, in
/// pieces too small for a trim to give back. Measured on the lab with 10,000 Services, a
/// speaker restarted with them in place (twice each way): 39.1 MiB of anonymous memory with
/// two arenas, 33.0 and 33.2 with one; peak 64.3 and 64.9 against 58.1 and 57.3 MiB.
#[allow(unsafe_code)] // One libc call, as above.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt takes no pointers; it sets a parameter for arenas created later.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
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

/// The first wait before a request the API server answered 429, 503 or 504 is sent again.
const API_RETRY_MIN: Duration = Duration::from_millis(100);
/// The longest wait between such tries (unless the API server's `Retry-After` asks for longer).
const API_RETRY_MAX: Duration = Duration::from_secs(1);
/// How many times such a request is sent again before its caller sees the error.
const API_RETRIES: u32 = 10;
/// The longest `Retry-After` waited out. A restarting kube-apiserver answers a request for a
/// custom resource that comes before it has installed every path 503 with `Retry-After: 5`,
/// a fixed guess: the metallb.io watches that met it listed again 5 s after the server
/// served, while every other kind had listed within 0.3 s.
const API_RETRY_AFTER_MAX: Duration = Duration::from_secs(2);

/// The retry of requests the API server answered 429, 503 or 504: kube's policy, whose steps
/// it keeps, with the server's `Retry-After` waited out up to [`API_RETRY_AFTER_MAX`].
#[derive(Clone)]
struct ApiRetry {
    steps: kube::client::retry::RetryPolicy,
}

impl ApiRetry {
    fn new() -> anyhow::Result<ApiRetry> {
        Ok(ApiRetry {
            steps: kube::client::retry::RetryPolicy::new(
                API_RETRY_MIN,
                API_RETRY_MAX,
                API_RETRIES,
                false,
            )
            .context("the API retry policy")?,
        })
    }
}

impl<Res>
    tower::retry::Policy<
        axum::http::Request<kube::client::Body>,
        axum::http::Response<Res>,
        tower::BoxError,
    > for ApiRetry
{
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut axum::http::Request<kube::client::Body>,
        result: &mut Result<axum::http::Response<Res>, tower::BoxError>,
    ) -> Option<Self::Future> {
        let asked = result.as_ref().ok().and_then(|response| {
            let seconds = response.headers().get(axum::http::header::RETRY_AFTER)?;
            seconds.to_str().ok()?.trim().parse::<u64>().ok()
        });
        let step = self.steps.retry(request, result)?;
        let Some(seconds) = asked else {
            return Some(step);
        };
        let asked = Duration::from_secs(seconds).min(API_RETRY_AFTER_MAX);
        if step.deadline() < tokio::time::Instant::now() + asked {
            Some(tokio::time::sleep(asked))
        } else {
            Some(step)
        }
    }

    fn clone_request(
        &mut self,
        request: &axum::http::Request<kube::client::Body>,
    ) -> Option<axum::http::Request<kube::client::Body>> {
        <kube::client::retry::RetryPolicy as tower::retry::Policy<
            axum::http::Request<kube::client::Body>,
            axum::http::Response<Res>,
            tower::BoxError,
        >>::clone_request(&mut self.steps, request)
    }
}

/// Requests waiting for the client's buffer task at most (more wait to be taken).
const API_BUFFER: usize = 1_024;
/// A connection to the API server with nothing in flight for this long is probed (TCP
/// keepalive) ...
const API_KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// ... every this long ...
const API_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// ... and given up after this many probes unanswered: 11 s of silence from a peer that
/// does not answer.
const API_KEEPALIVE_PROBES: u32 = 3;
/// The longest data sent to the API server may wait for its acknowledgement before the
/// connection is given up (`TCP_USER_TIMEOUT`; Linux's default: about 15 minutes of
/// retransmissions).
const API_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for a connection to the API server (kube's default: 30 s).
const API_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A Kubernetes client for `config`, built as kube builds its own (TLS as the configuration
/// says, its authentication and headers, its read and write timeouts) with two differences.
///
/// Its connections are probed with TCP keepalive (5 s idle, then every 2 s, three probes).
/// A watch is a request whose answer may be silent for minutes, kube's connections have no
/// keepalive, and a watch has no read timeout: when the API server's end goes away without a
/// word reaching the node (its host lost, a firewall or load balancer in between dropping the
/// connection's state), the watch waited for ever, and the daemon never heard of a change
/// again. Here such a connection is given up after 11 s of unanswered probes and the watch
/// starts again on a new one. A request sent while the path to the API server drops
/// everything waits for TCP to send it again, at intervals that double each time (a 15 s
/// outage left requests waiting up to 13 s more after it ended): data unacknowledged for
/// 10 s gives the connection up, and the request is made again on a new one. Connecting
/// waits 5 s at most (kube: 30 s), so that a try made while the API server cannot be reached
/// is made again soon after.
///
/// Its requests answered 429, 503 or 504 are sent again after 100 ms, doubling (with jitter)
/// up to 1 s, or after the API server's `Retry-After` when that is longer (2 s at most, see
/// [`API_RETRY_AFTER_MAX`]), ten times at most.
/// kube's default retry (5 ms doubling up to 1,000 s, fifteen times) is wrong for the moment
/// it matters most: a restarted API server answers every watch 429 until its watch cache has
/// listed, for a second or two, and by then a watch retried that way waits 5, 10, 20 s
/// before it tries again — an endpoint that moved meanwhile reached the routers 10 to 20 s
/// after the API server was back. Here a request tries again within a second of the API
/// server being able to answer it.
pub(crate) fn client(config: kube::Config) -> anyhow::Result<Client> {
    use kube::client::ConfigExt as _;
    use tower::ServiceBuilder;

    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_keepalive(Some(API_KEEPALIVE_IDLE));
    tcp.set_keepalive_interval(Some(API_KEEPALIVE_INTERVAL));
    tcp.set_keepalive_retries(Some(API_KEEPALIVE_PROBES));
    tcp.set_tcp_user_timeout(Some(API_USER_TIMEOUT));
    let tls = config
        .rustls_https_connector_with_connector(tcp)
        .context("the API server's TLS settings")?;
    let mut connector = hyper_timeout::TimeoutConnector::new(tls);
    connector.set_connect_timeout(Some(
        config
            .connect_timeout
            .map_or(API_CONNECT_TIMEOUT, |t| t.min(API_CONNECT_TIMEOUT)),
    ));
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    let stack = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .auth_layer()
                .context("the API server's credentials")?,
        )
        .layer(
            config
                .extra_headers_layer()
                .context("the API client's headers")?,
        )
        .map_err(tower::BoxError::from)
        .service(http);
    let policy = ApiRetry::new()?;
    // A retried request is sent again through a clone of the stack, which sits behind a
    // buffer: its task hands each request on as it comes (the requests still run side by
    // side).
    let service = ServiceBuilder::new()
        .layer(tower::retry::RetryLayer::new(policy))
        .layer(tower::buffer::BufferLayer::new(API_BUFFER))
        .service(stack);
    Ok(Client::new(service, config.default_namespace))
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
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes client configuration (in-cluster or KUBECONFIG)")?;
    let client = client(config)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    use super::*;

    /// An API server on loopback whose `/version` answers 429 until `busy_for` has passed
    /// since it started (with `Retry-After: retry_after` when given), then the version; it
    /// records when each request came.
    async fn busy_server(
        busy_for: Duration,
        retry_after: Option<u64>,
    ) -> (
        Client,
        Arc<Mutex<Vec<tokio::time::Instant>>>,
        std::net::SocketAddr,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let started = tokio::time::Instant::now();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        let version = axum::Router::new().route(
            "/version",
            axum::routing::get(move || {
                let log = Arc::clone(&log);
                async move {
                    log.lock().unwrap().push(tokio::time::Instant::now());
                    if started.elapsed() < busy_for {
                        let mut busy = StatusCode::TOO_MANY_REQUESTS.into_response();
                        if let Some(seconds) = retry_after {
                            busy.headers_mut()
                                .insert("retry-after", seconds.to_string().parse().unwrap());
                        }
                        return busy;
                    }
                    axum::Json(serde_json::json!({
                        "major": "1", "minor": "37", "gitVersion": "v1.37.2", "gitCommit": "",
                        "gitTreeState": "clean", "buildDate": "", "goVersion": "",
                        "compiler": "gc", "platform": "linux/amd64",
                    }))
                    .into_response()
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, version).await });
        let url = format!("http://{addr}").parse().unwrap();
        (client(kube::Config::new(url)).unwrap(), asked, addr)
    }

    /// A request answered 429 for 3 s (a restarted API server's watch cache still listing)
    /// is answered within a second of the server being able to: kube's default retry would
    /// be waiting out a step of 2.5 to 7.7 s by then.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_api_server_is_asked_again_within_a_second() {
        // From before the server starts counting its busy time, so that the answer can come
        // no sooner than 3 s after this.
        let started = tokio::time::Instant::now();
        let (client, asked, _) = busy_server(Duration::from_secs(3), None).await;
        client.apiserver_version().await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_millis(4_100),
            "answered after {took:?}"
        );
        let asked = asked.lock().unwrap();
        let waits: Vec<_> = asked.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            waits
                .iter()
                .all(|w| *w <= API_RETRY_MAX + Duration::from_millis(100)),
            "{waits:?}"
        );
        assert!(asked.len() >= 5, "asked {} times", asked.len());
    }

    /// The client's connections to the API server carry TCP keepalive (`ss` shows the
    /// keepalive timer of the idle connection kept for the next request).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_to_the_api_server_are_probed_with_keepalive() {
        let (client, _, addr) = busy_server(Duration::ZERO, None).await;
        client.apiserver_version().await.unwrap();
        let port = addr.port();
        let sockets = std::process::Command::new("ss")
            .args(["-tno", "state", "established", "dport", &format!(":{port}")])
            .output()
            .unwrap();
        let sockets = String::from_utf8_lossy(&sockets.stdout);
        assert!(sockets.contains("timer:(keepalive"), "{sockets}");
    }

    /// A `Retry-After` over 2 s is waited out for 2 s: the 5 s a restarting kube-apiserver
    /// asks of requests for custom resources (a guess; it serves them within a second) held
    /// a watch 5 s after the server could answer it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_after_is_waited_out_for_two_seconds_at_most() {
        let (client, asked, _) = busy_server(Duration::from_millis(500), Some(5)).await;
        client.apiserver_version().await.unwrap();
        let asked = asked.lock().unwrap();
        assert_eq!(asked.len(), 2, "asked {} times", asked.len());
        let waited = asked[1] - asked[0];
        assert!(
            waited >= API_RETRY_AFTER_MAX
                && waited < API_RETRY_AFTER_MAX + Duration::from_millis(500),
            "{waited:?}"
        );
    }

    /// The API server's `Retry-After` is waited out when it asks for longer than the step.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retry_after_is_honoured() {
        let (client, asked, _) = busy_server(Duration::from_millis(500), Some(2)).await;
        client.apiserver_version().await.unwrap();
        let asked = asked.lock().unwrap();
        assert_eq!(asked.len(), 2, "asked {} times", asked.len());
        assert!(
            asked[1] - asked[0] >= Duration::from_secs(2),
            "{:?}",
            asked[1] - asked[0]
        );
    }

    /// A start-up step failing while the API server is away is tried again within 2 s of
    /// its return, however long it was away (with waits doubling up to 5 s, it came 5 s
    /// late after an absence of 6.5 s).
    #[tokio::test(start_paused = true)]
    async fn a_start_up_step_is_tried_within_two_seconds_of_the_api_server_returning() {
        for away in [1_500, 6_500, 20_000, 61_000] {
            let away = Duration::from_millis(away);
            let start = tokio::time::Instant::now();
            let tries = std::sync::atomic::AtomicU32::new(0);
            let done = until_done("asking", &CancellationToken::new(), || {
                tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let back = start.elapsed() >= away;
                async move { if back { Ok(()) } else { Err("refused") } }
            })
            .await;
            assert_eq!(done, Some(()));
            let late = start.elapsed() - away;
            assert!(
                late <= WATCH_RETRY_MAX,
                "away {away:?}: tried {late:?} after the API server was back"
            );
            // Not a busy loop either: a try at most every 2 s once the waits have grown.
            let tries = tries.into_inner();
            assert!(
                u128::from(tries) <= 6 + away.as_millis() / 1_000,
                "away {away:?}: {tries} tries"
            );
        }
    }
}
