//! `/metrics` over HTTPS, for callers the API server vouches for, as MetalLB 0.16 serves it:
//! the bearer token of each request is checked with a TokenReview, and the user it names
//! must be allowed `get` on the non-resource URL `/metrics` (a SubjectAccessReview), the
//! permission Prometheus' own ClusterRoles grant. Answers: 401 without a token or with one
//! the API server does not accept, 403 when the user may not read metrics, 503 when the API
//! server cannot be asked. A verdict is kept for a minute per token, so a scrape every few
//! seconds costs the API server two requests a minute.
//!
//! The certificate is `tls.crt`/`tls.key` from a directory (a mounted Secret, e.g. from
//! cert-manager; read again when it changes) or, without one, a self-signed one made at
//! start: scrapers then skip verification, as MetalLB's chart has them do.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a verdict on a token is kept.
const KEEP: Duration = Duration::from_secs(60);
/// Verdicts kept at most; beyond, all are dropped.
const KEPT: usize = 1_024;
/// How often the certificate directory is read again.
const RELOAD: Duration = Duration::from_secs(60);

/// How `/metrics` is secured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecureMetrics {
    /// A directory holding `tls.crt` and `tls.key`; `None` for a self-signed certificate.
    pub cert_dir: Option<PathBuf>,
}

/// What the API server says of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    NotAuthenticated,
    Forbidden,
}

/// Verdicts by the SHA-256 of their token, with the time each was given.
type Kept = HashMap<[u8; 32], (Verdict, Instant)>;

/// Who may read `/metrics`.
#[derive(Clone)]
pub(crate) struct Gate {
    client: Client,
    kept: Arc<Mutex<Kept>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate asking the API server `client` talks to.
    pub(crate) fn new(client: Client) -> Gate {
        Gate {
            client,
            kept: Arc::default(),
        }
    }

    async fn verdict(&self, token: &str) -> Result<Verdict, kube::Error> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Some((verdict, at)) = self.kept.lock().expect("not poisoned").get(&key)
            && now.duration_since(*at) < KEEP
        {
            return Ok(*verdict);
        }
        let verdict = self.ask(token).await?;
        let mut kept = self.kept.lock().expect("not poisoned");
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert(key, (verdict, now));
        Ok(verdict)
    }

    async fn ask(&self, token: &str) -> Result<Verdict, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let status = reviewed.status.unwrap_or_default();
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
            return Ok(Verdict::NotAuthenticated);
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some("/metrics".into()),
                    verb: Some("get".into()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answered = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await?;
        Ok(if answered.status.is_some_and(|s| s.allowed) {
            Verdict::Allowed
        } else {
            Verdict::Forbidden
        })
    }
}

/// The bearer token of a request.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Lets a request through to `/metrics` only when the API server allows its caller.
pub(crate) async fn guard(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let refused = |status: StatusCode, why: String| {
        (
            status,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            format!("{why}\n"),
        )
            .into_response()
    };
    let Some(token) = bearer(request.headers()) else {
        return refused(
            StatusCode::UNAUTHORIZED,
            "/metrics needs a bearer token (a ServiceAccount's, allowed get on the non-resource URL /metrics)".into(),
        );
    };
    match gate.verdict(token).await {
        Ok(Verdict::Allowed) => next.run(request).await,
        Ok(Verdict::NotAuthenticated) => refused(
            StatusCode::UNAUTHORIZED,
            "the API server does not accept this token (TokenReview)".into(),
        ),
        Ok(Verdict::Forbidden) => refused(
            StatusCode::FORBIDDEN,
            "this token's user may not get the non-resource URL /metrics (SubjectAccessReview)"
                .into(),
        ),
        Err(error) => {
            tracing::warn!(%error, "checking a /metrics caller with the API server");
            refused(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the API server could not be asked about this token: {error}"),
            )
        }
    }
}

/// The TLS configuration: the certificate in `secure.cert_dir` (read again every minute
/// until `shutdown`), or a self-signed one.
pub(crate) async fn tls(
    secure: &SecureMetrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<RustlsConfig> {
    use anyhow::Context as _;
    // One crypto provider for the process (kube's client uses the same one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(dir) = secure.cert_dir.clone() else {
        let names = vec!["localhost".to_string()];
        let bundle = crate::webhook::certs::generate(&names)
            .context("making a self-signed certificate for /metrics")?;
        return Ok(
            RustlsConfig::from_pem(bundle.cert.into_bytes(), bundle.key.into_bytes()).await?,
        );
    };
    let read = |dir: &PathBuf| -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        Ok((
            std::fs::read(dir.join("tls.crt"))?,
            std::fs::read(dir.join("tls.key"))?,
        ))
    };
    let (cert, key) = read(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let config = RustlsConfig::from_pem(cert.clone(), key.clone())
        .await
        .with_context(|| format!("the certificate in {}", dir.display()))?;
    let reloaded = config.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut current = (cert, key);
        loop {
            tokio::select! {
                () = tokio::time::sleep(RELOAD) => {}
                () = shutdown.cancelled() => return,
            }
            match read(&dir) {
                Ok(now) if now != current => {
                    match reloaded.reload_from_pem(now.0.clone(), now.1.clone()).await {
                        Ok(()) => {
                            tracing::info!(dir = %dir.display(), "metrics certificate reloaded");
                            current = now;
                        }
                        Err(error) => tracing::warn!(%error, "the new metrics certificate"),
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, dir = %dir.display(), "reading the metrics certificate")
                }
            }
        }
    });
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_is_read_from_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer abc.def".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc.def"));
        headers.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic dXNlcg==".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
