//! The validating admission webhook the controller serves (`--webhook-addr`): every create,
//! update and delete of a `metallb.io` configuration object in ferrolb's namespace is judged by
//! [`review::review`] against the controller's caches, over TLS (AdmissionReview v1).
//!
//! Certificates come from [`certs`] (a CA and serving certificate the controller makes and
//! renews in a Secret, with the CA patched into the ValidatingWebhookConfiguration's
//! `caBundle`), or from files cert-manager maintains (`--webhook-cert-dir`, `tls.crt` and
//! `tls.key`; cert-manager's CA injector then owns the `caBundle`). Either way a renewed
//! certificate is served without a restart. Every replica serves the webhook, leader or not:
//! their caches are all warm.

pub(crate) mod certs;
pub(crate) mod review;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterObjects, LoadOptions};
use crate::http::Limits;

/// How often the certificate is checked for renewal (and the files re-read).
const CHECK: Duration = Duration::from_secs(600);

/// Where and how the webhook is served.
#[derive(Clone, Debug)]
pub(crate) struct WebhookOptions {
    /// The TLS listener.
    pub addr: SocketAddr,
    /// ferrolb's namespace.
    pub namespace: String,
    /// The Service in front of the webhook (its DNS names go into the certificate).
    pub service: String,
    /// More names or IPs for the certificate.
    pub extra_names: Vec<String>,
    /// The Secret holding the CA and serving certificate.
    pub secret: String,
    /// The ValidatingWebhookConfiguration whose `caBundle` is kept current.
    pub configuration: String,
    /// cert-manager's files instead of the Secret.
    pub cert_dir: Option<PathBuf>,
}

impl WebhookOptions {
    fn names(&self) -> Vec<String> {
        let mut names = vec![
            format!("{}.{}.svc", self.service, self.namespace),
            format!("{}.{}.svc.cluster.local", self.service, self.namespace),
            format!("{}.{}", self.service, self.namespace),
            self.service.clone(),
        ];
        names.extend(self.extra_names.iter().cloned());
        names
    }
}

type Objects = Arc<dyn Fn() -> ClusterObjects + Send + Sync>;

#[derive(Clone)]
struct Shared {
    objects: Objects,
    load: LoadOptions,
}

async fn validate(
    State(shared): State<Shared>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    Json(answer(&(shared.objects)(), &shared.load, review))
}

/// The answer to `review`, given the configuration objects the cluster holds now.
pub(crate) fn answer(
    objects: &ClusterObjects,
    load: &LoadOptions,
    review: AdmissionReview<DynamicObject>,
) -> AdmissionReview<DynamicObject> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(error) => {
            return AdmissionResponse::invalid(error.to_string()).into_review();
        }
    };
    let response = review::review(objects, load, &request);
    if !response.allowed {
        tracing::info!(
            kind = %request.kind.kind,
            name = %request.name,
            operation = ?request.operation,
            reason = %response.result.message,
            "admission denied"
        );
    }
    response.into_review()
}

/// `/validate`, under `limits`.
fn app(shared: Shared, limits: Limits) -> axum::Router {
    limits.on(axum::Router::new()
        .route("/validate", post(validate))
        .with_state(shared))
}

/// The serving pair (and the CA, when ferrolb manages it).
async fn current(
    client: &Client,
    options: &WebhookOptions,
) -> anyhow::Result<(Vec<u8>, Vec<u8>, Option<String>)> {
    if let Some(dir) = &options.cert_dir {
        let cert = tokio::fs::read(dir.join("tls.crt")).await?;
        let key = tokio::fs::read(dir.join("tls.key")).await?;
        return Ok((cert, key, None));
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), &options.namespace);
    let bundle = certs::ensure(&api, &options.secret, &options.namespace, &options.names()).await?;
    Ok((
        bundle.cert.into_bytes(),
        bundle.key.into_bytes(),
        Some(bundle.ca_cert),
    ))
}

/// Puts `ca` into every webhook of the configuration; whether it changed anything.
pub(crate) async fn patch_ca_bundle(client: &Client, name: &str, ca: &str) -> anyhow::Result<bool> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    for _ in 0..5 {
        let Some(mut configuration) = api.get_opt(name).await? else {
            anyhow::bail!("ValidatingWebhookConfiguration {name} does not exist");
        };
        let wanted = ByteString(ca.as_bytes().to_vec());
        let mut changed = false;
        for webhook in configuration.webhooks.iter_mut().flatten() {
            if webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
                webhook.client_config.ca_bundle = Some(wanted.clone());
                changed = true;
            }
        }
        if !changed {
            return Ok(false);
        }
        match api.replace(name, &Default::default(), &configuration).await {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(error.into()),
        }
    }
    anyhow::bail!("ValidatingWebhookConfiguration {name} kept changing")
}

/// Serves the webhook until `shutdown`.
pub(crate) async fn run(
    client: Client,
    options: WebhookOptions,
    load: LoadOptions,
    objects: Objects,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // One crypto provider for the process (kube's client uses the same one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cert, key, ca) = current(&client, &options).await?;
    let tls = RustlsConfig::from_pem(cert.clone(), key.clone()).await?;
    let mut patched_ca = None;
    if let Some(ca) = &ca {
        match patch_ca_bundle(&client, &options.configuration, ca).await {
            Ok(_) => patched_ca = Some(ca.clone()),
            Err(error) => tracing::warn!(%error, "setting the webhook's caBundle; retried later"),
        }
    }
    let handle = axum_server::Handle::new();
    let mut server = axum_server::bind_rustls(options.addr, tls.clone()).handle(handle.clone());
    Limits::WEBHOOK.connections(server.http_builder());
    let server = server.serve(app(Shared { objects, load }, Limits::WEBHOOK).into_make_service());
    tracing::info!(addr = %options.addr, "webhook serving");
    let renew = {
        let client = client.clone();
        let options = options.clone();
        let shutdown = shutdown.clone();
        async move {
            let (mut cert, mut key) = (cert, key);
            let mut patched = patched_ca;
            let mut check = tokio::time::interval(if patched.is_some() || ca.is_none() {
                CHECK
            } else {
                Duration::from_secs(5)
            });
            check.tick().await;
            loop {
                tokio::select! {
                    _ = check.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                match current(&client, &options).await {
                    Ok((new_cert, new_key, ca)) => {
                        if (new_cert != cert || new_key != key)
                            && tls
                                .reload_from_pem(new_cert.clone(), new_key.clone())
                                .await
                                .is_ok()
                        {
                            tracing::info!("webhook certificate reloaded");
                            (cert, key) = (new_cert, new_key);
                        }
                        if let Some(ca) = ca
                            && patched.as_ref() != Some(&ca)
                        {
                            match patch_ca_bundle(&client, &options.configuration, &ca).await {
                                Ok(_) => patched = Some(ca),
                                Err(error) => {
                                    tracing::warn!(%error, "setting the webhook's caBundle")
                                }
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "checking the webhook certificate"),
                }
            }
        }
    };
    let stop = {
        let handle = handle.clone();
        async move {
            shutdown.cancelled().await;
            handle.graceful_shutdown(Some(Duration::from_secs(2)));
        }
    };
    tokio::spawn(renew);
    tokio::spawn(stop);
    server.await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The webhook's router on plain HTTP with short limits; its address.
    async fn serve(limits: Limits) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut server = axum_server::from_tcp(listener).unwrap();
        limits.connections(server.http_builder());
        let shared = Shared {
            objects: Arc::new(ClusterObjects::default),
            load: LoadOptions::default(),
        };
        tokio::spawn(server.serve(app(shared, limits).into_make_service()));
        addr
    }

    /// What the server answers to `head` then `body`, read until it closes or for 3 s.
    async fn answer(addr: SocketAddr, head: &str, body: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut out = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut out))
            .await
            .expect("no answer within 3 s")
            .unwrap();
        String::from_utf8_lossy(&out[..n]).into_owned()
    }

    #[tokio::test]
    async fn a_trickled_body_times_out_and_an_oversized_one_is_refused() {
        let limits = Limits {
            headers: Duration::from_millis(300),
            request: Duration::from_millis(300),
            body: 1024,
        };
        let addr = serve(limits).await;
        let post = |length: usize| {
            format!(
                "POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
            )
        };
        // Ten bytes of a hundred, then nothing.
        let slow = answer(addr, &post(100), b"{\"kind\": \"").await;
        assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
        let large = answer(addr, &post(4096), &[b' '; 4096]).await;
        assert!(large.starts_with("HTTP/1.1 413"), "{large}");
        // A review within the limits is still answered.
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u", "kind": {"group": "metallb.io", "version": "v1beta1", "kind": "IPAddressPool"},
                "resource": {"group": "metallb.io", "version": "v1beta1", "resource": "ipaddresspools"},
                "name": "p", "namespace": "metallb-system", "operation": "CREATE", "userInfo": {},
                "object": {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                    "metadata": {"name": "p", "namespace": "metallb-system"},
                    "spec": {"addresses": ["10.0.0.0/24"]}},
            },
        })
        .to_string();
        let good = answer(addr, &post(review.len()), review.as_bytes()).await;
        assert!(good.starts_with("HTTP/1.1 200"), "{good}");
        assert!(good.contains(r#""allowed":true"#), "{good}");
    }
}
