//! Where the webhook's certificate comes from, and keeping it current while serving.
//!
//! Self-signed mode: every replica runs the same idempotent loop: read the Secret, create or
//! renew what is missing or expiring (optimistic concurrency: a replica that loses the race
//! re-reads), patch `caBundle` into the MutatingWebhookConfiguration, and hot-reload the
//! listener when the serving certificate changed. Files mode (cert-manager): re-read the
//! mounted files and reload when they change; cert-manager's CA injector owns `caBundle`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::certs::{self, CertBundle, Lifetimes, Renewal};
use crate::access::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::metrics::Metrics;
use crate::{Error, Result};

pub const CA_BUNDLE_KEY: &str = "ca.crt";
pub const CA_KEY_KEY: &str = "ca.key";
pub const CERT_KEY: &str = "tls.crt";
pub const KEY_KEY: &str = "tls.key";

/// Self-signed mode settings.
#[derive(Clone, Debug)]
pub struct SelfSigned {
    pub namespace: String,
    pub secret: String,
    pub webhook_config: String,
    pub dns_names: Vec<String>,
    pub lifetimes: Lifetimes,
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum Source {
    SelfSigned(SelfSigned),
    Files { cert: PathBuf, key: PathBuf },
}

fn bundle_from_secret(secret: &Secret) -> Option<CertBundle> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Some(CertBundle {
        ca_bundle: text(CA_BUNDLE_KEY)?,
        ca_key: text(CA_KEY_KEY)?,
        cert: text(CERT_KEY)?,
        key: text(KEY_KEY)?,
    })
}

fn secret_data(bundle: &CertBundle) -> BTreeMap<String, ByteString> {
    BTreeMap::from([
        (
            CA_BUNDLE_KEY.to_string(),
            ByteString(bundle.ca_bundle.clone().into_bytes()),
        ),
        (
            CA_KEY_KEY.to_string(),
            ByteString(bundle.ca_key.clone().into_bytes()),
        ),
        (
            CERT_KEY.to_string(),
            ByteString(bundle.cert.clone().into_bytes()),
        ),
        (
            KEY_KEY.to_string(),
            ByteString(bundle.key.clone().into_bytes()),
        ),
    ])
}

/// Reads the Secret, creating or renewing its content as needed; returns the current bundle.
pub async fn ensure_secret(
    client: &Client,
    s: &SelfSigned,
    now: OffsetDateTime,
) -> Result<CertBundle> {
    let api = Api::<Secret>::namespaced(client.clone(), &s.namespace);
    let what = format!("webhook TLS Secret {}/{}", s.namespace, s.secret);
    // Two replicas may race; the loser's write conflicts (409) and it re-reads the winner's.
    for _ in 0..3 {
        let existing = api
            .get_opt(&s.secret)
            .await
            .map_err(Error::kube(format!("reading {what}")))?;
        let Some(mut secret) = existing else {
            let bundle = certs::generate_bundle(&s.dns_names, now, &s.lifetimes)?;
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(s.secret.clone()),
                    namespace: Some(s.namespace.clone()),
                    labels: Some(BTreeMap::from([(
                        MANAGED_BY_LABEL.to_string(),
                        MANAGED_BY.to_string(),
                    )])),
                    ..ObjectMeta::default()
                },
                type_: Some("Opaque".into()),
                data: Some(secret_data(&bundle)),
                ..Secret::default()
            };
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => {
                    info!(secret = %what, "created webhook CA and serving certificate");
                    return Ok(bundle);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(Error::kube(format!("creating {what}"))(e)),
            }
        };
        let renewal = match bundle_from_secret(&secret) {
            Some(b) => {
                let r = certs::renewal_needed(&b, &s.dns_names, now, &s.lifetimes);
                if r == Renewal::None {
                    return Ok(b);
                }
                (b, r)
            }
            None => {
                let empty = CertBundle {
                    ca_bundle: String::new(),
                    ca_key: String::new(),
                    cert: String::new(),
                    key: String::new(),
                };
                (empty, Renewal::All)
            }
        };
        let bundle = certs::renew(&renewal.0, renewal.1, &s.dns_names, now, &s.lifetimes)?;
        // replace() sends the resourceVersion we read: a concurrent writer makes this 409.
        secret.data = Some(secret_data(&bundle));
        match api
            .replace(&s.secret, &PostParams::default(), &secret)
            .await
        {
            Ok(_) => {
                info!(secret = %what, renewal = ?renewal.1, "renewed webhook certificates");
                return Ok(bundle);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(Error::kube(format!("renewing {what}"))(e)),
        }
    }
    Err(Error::Tls(format!(
        "{what} kept changing under concurrent writers; will retry"
    )))
}

/// Sets `caBundle` on every webhook of the configuration that lacks it. Returns whether
/// anything was patched; a missing configuration is not an error (the chart may create it
/// after the operator starts).
pub async fn patch_ca_bundle(client: &Client, config_name: &str, ca_bundle: &str) -> Result<bool> {
    let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let what = format!("MutatingWebhookConfiguration {config_name}");
    let Some(config) = api
        .get_opt(config_name)
        .await
        .map_err(Error::kube(format!("reading {what}")))?
    else {
        warn!(config = %config_name, "MutatingWebhookConfiguration not found; caBundle not set yet");
        return Ok(false);
    };
    let wanted = ByteString(ca_bundle.as_bytes().to_vec());
    let mut ops = Vec::new();
    for (i, hook) in config.webhooks.iter().flatten().enumerate() {
        if hook.client_config.ca_bundle.as_ref() == Some(&wanted) {
            continue;
        }
        // The test guards against the list changing between our read and the patch.
        ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": hook.name}));
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": wanted}));
    }
    if ops.is_empty() {
        return Ok(false);
    }
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).map_err(|source| {
            Error::Serialize {
                what: "caBundle patch",
                source,
            }
        })?;
    api.patch(
        config_name,
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await
    .map_err(Error::kube(format!("patching caBundle of {what}")))?;
    info!(config = %config_name, "patched caBundle");
    Ok(true)
}

/// Reads the serving certificate once (creating it in self-signed mode).
pub async fn load(client: &Client, source: &Source) -> Result<(String, String)> {
    match source {
        Source::SelfSigned(s) => {
            let bundle = ensure_secret(client, s, OffsetDateTime::now_utc()).await?;
            patch_ca_bundle(client, &s.webhook_config, &bundle.ca_bundle).await?;
            Ok((bundle.cert, bundle.key))
        }
        Source::Files { cert, key } => {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p)
                    .map_err(|e| Error::Tls(format!("reading {}: {e}", p.display())))
            };
            Ok((read(cert)?, read(key)?))
        }
    }
}

/// Builds a rustls server config (aws-lc-rs, the process default provider) from PEM.
pub async fn rustls_config(cert: &str, key: &str) -> Result<RustlsConfig> {
    RustlsConfig::from_pem(cert.as_bytes().to_vec(), key.as_bytes().to_vec())
        .await
        .map_err(|e| Error::Tls(format!("serving certificate or key unusable: {e}")))
}

fn record_expiry(metrics: &Metrics, cert: &str) {
    if let Ok(info) = certs::inspect(cert)
        && let Some(leaf) = info.first()
    {
        metrics
            .webhook_cert_expiry
            .set(leaf.not_after.unix_timestamp());
    }
}

/// Keeps `config` current until `shutdown`: re-checks every `every`.
pub async fn keep_current(
    client: Client,
    source: Source,
    config: RustlsConfig,
    mut loaded: (String, String),
    every: Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    record_expiry(&metrics, &loaded.0);
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        match load(&client, &source).await {
            Ok(fresh) if fresh != loaded => {
                match config
                    .reload_from_pem(fresh.0.as_bytes().to_vec(), fresh.1.as_bytes().to_vec())
                    .await
                {
                    Ok(()) => {
                        info!("webhook serving certificate reloaded");
                        record_expiry(&metrics, &fresh.0);
                        loaded = fresh;
                    }
                    Err(e) => {
                        warn!(error = %e, "new webhook certificate unusable; keeping the old one")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "checking the webhook certificate failed; retrying"),
        }
    }
}
