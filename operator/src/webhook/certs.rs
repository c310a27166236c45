//! The webhook's certificates, without cert-manager: a CA and a serving certificate kept in a
//! Secret (`ca.crt`, `ca.key`, `tls.crt`, `tls.key`), made by whichever controller replica
//! finds it missing first (a racing replica reads the winner's). The serving certificate is
//! renewed with the same CA when less than a third of its life is left, so the `caBundle` in
//! the ValidatingWebhookConfiguration only changes when the CA itself is replaced.

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// How long the CA is valid.
pub(crate) const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a serving certificate is valid.
pub(crate) const SERVING_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// PEM texts of the CA and the serving pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bundle {
    /// The CA certificate (the `caBundle`).
    pub ca_cert: String,
    /// The CA key.
    pub ca_key: String,
    /// The serving certificate.
    pub cert: String,
    /// The serving key.
    pub key: String,
    /// When the serving certificate was made (seconds since the epoch).
    pub issued: u64,
    /// When it stops being valid (seconds since the epoch).
    pub expires: u64,
    /// When the CA stops being valid.
    pub ca_expires: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn stamp(seconds: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).unwrap_or(i64::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn ca_params(issued: u64) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "ferrolb webhook CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = stamp(issued.saturating_sub(300));
    params.not_after = stamp(issued + CA_LIFETIME.as_secs());
    params
}

/// A new CA and serving certificate for `names` (DNS names or IP addresses).
pub(crate) fn generate(names: &[String]) -> Result<Bundle, rcgen::Error> {
    let issued = now();
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params(issued).self_signed(&ca_key)?;
    serving(
        &ca_cert.pem(),
        &ca_key.serialize_pem(),
        issued + CA_LIFETIME.as_secs(),
        names,
    )
}

/// A new serving certificate for `names`, signed by the CA in `ca_cert`/`ca_key` (valid
/// until `ca_expires`).
pub(crate) fn serving(
    ca_cert: &str,
    ca_key: &str,
    ca_expires: u64,
    names: &[String],
) -> Result<Bundle, rcgen::Error> {
    let issued = now();
    let signing = KeyPair::from_pem(ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert, signing)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = name;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = stamp(issued.saturating_sub(300));
    let expires = issued + SERVING_LIFETIME.as_secs();
    params.not_after = stamp(expires);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Bundle {
        ca_cert: ca_cert.to_string(),
        ca_key: ca_key.to_string(),
        cert: cert.pem(),
        key: key.serialize_pem(),
        issued,
        expires,
        ca_expires,
    })
}

const ISSUED: &str = "ferrolb.io/issued";
const EXPIRES: &str = "ferrolb.io/expires";
const NAMES: &str = "ferrolb.io/names";
const CA_EXPIRES: &str = "ferrolb.io/ca-expires";

impl Bundle {
    /// Whether the serving certificate should be renewed at `at` (a third of its life left),
    /// or was made for other names.
    pub(crate) fn due(&self, at: u64, names: &[String], made_for: &str) -> bool {
        let life = self.expires.saturating_sub(self.issued);
        at + life / 3 >= self.expires || made_for != names.join(",")
    }

    /// As a Secret's data and annotations.
    pub(crate) fn into_secret(self, name: &str, namespace: &str, names: &[String]) -> Secret {
        let data = [
            ("ca.crt", self.ca_cert),
            ("ca.key", self.ca_key),
            ("tls.crt", self.cert),
            ("tls.key", self.key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
        .collect();
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                annotations: Some(
                    [
                        (ISSUED.to_string(), self.issued.to_string()),
                        (EXPIRES.to_string(), self.expires.to_string()),
                        (NAMES.to_string(), names.join(",")),
                        (CA_EXPIRES.to_string(), self.ca_expires.to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".to_string()),
            data: Some(data),
            ..Default::default()
        }
    }

    /// Read back from a Secret, with the names it was made for; `None` when incomplete.
    pub(crate) fn from_secret(secret: &Secret) -> Option<(Bundle, String)> {
        let data = secret.data.as_ref()?;
        let text = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        let annotations = secret.metadata.annotations.as_ref()?;
        let number = |k: &str| annotations.get(k).and_then(|v| v.parse::<u64>().ok());
        Some((
            Bundle {
                ca_cert: text("ca.crt")?,
                ca_key: text("ca.key")?,
                cert: text("tls.crt")?,
                key: text("tls.key")?,
                issued: number(ISSUED)?,
                expires: number(EXPIRES)?,
                ca_expires: number(CA_EXPIRES)?,
            },
            annotations.get(NAMES).cloned().unwrap_or_default(),
        ))
    }
}

/// Makes sure `namespace/name` holds a bundle for `names` that is not due; returns it.
pub(crate) async fn ensure(
    api: &kube::Api<Secret>,
    name: &str,
    namespace: &str,
    names: &[String],
) -> anyhow::Result<Bundle> {
    for _ in 0..5 {
        let existing = api.get_opt(name).await?;
        let current = existing.as_ref().and_then(Bundle::from_secret);
        if let Some((bundle, made_for)) = &current
            && !bundle.due(now(), names, made_for)
        {
            return Ok(bundle.clone());
        }
        // Keep the CA while it outlives a new serving certificate, so the caBundle stays.
        let fresh = match &current {
            Some((bundle, _)) if bundle.ca_expires > now() + SERVING_LIFETIME.as_secs() => {
                serving(&bundle.ca_cert, &bundle.ca_key, bundle.ca_expires, names)?
            }
            _ => generate(names)?,
        };
        let mut secret = fresh.clone().into_secret(name, namespace, names);
        let written = match existing {
            Some(old) => {
                secret.metadata.resource_version = old.metadata.resource_version;
                api.replace(name, &Default::default(), &secret).await
            }
            None => api.create(&Default::default(), &secret).await,
        };
        match written {
            Ok(_) => {
                tracing::info!(secret = %format!("{namespace}/{name}"), "webhook certificate written");
                return Ok(fresh);
            }
            // Another replica wrote first: read its bundle.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(error.into()),
        }
    }
    anyhow::bail!(
        "Secret {namespace}/{name} kept changing while the webhook certificate was written"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_round_trip_through_a_secret_and_renew_with_the_same_ca() {
        let names = vec![
            "ferrolb-webhook.metallb-system.svc".to_string(),
            "127.0.0.1".to_string(),
        ];
        let bundle = generate(&names).unwrap();
        assert!(bundle.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let secret = bundle.clone().into_secret("cert", "metallb-system", &names);
        let (back, made_for) = Bundle::from_secret(&secret).unwrap();
        assert_eq!(back, bundle);
        assert!(!back.due(bundle.issued, &names, &made_for));
        // Two thirds into its life, or for other names: due.
        let later = bundle.issued + SERVING_LIFETIME.as_secs() * 2 / 3 + 1;
        assert!(back.due(later, &names, &made_for));
        assert!(back.due(bundle.issued, &names[..1], &made_for));
        let renewed = serving(&bundle.ca_cert, &bundle.ca_key, bundle.ca_expires, &names).unwrap();
        assert_eq!(renewed.ca_cert, bundle.ca_cert);
        assert_ne!(renewed.cert, bundle.cert);
    }
}
