//! The authenticated upstream: one lettre pool per decrypted credential, rebuilt when the
//! credential changes (re-seal, or re-decrypt after the cache TTL), and dropped when the
//! credential source lets go of the plaintext.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{Address, AsyncTransport, Tokio1Executor};
use mailcred_core::crd::TlsMode;
use mailcred_core::credential::UsableCredential;

use crate::config::RelayConfig;
use crate::error::Error;
use crate::reply::{Reply, sanitize};

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Result of handing one message to the upstream server.
#[derive(Debug)]
pub struct Delivery {
    /// What the application is told.
    pub reply: Reply,
    /// Upstream's reply code, when it answered.
    pub upstream_code: Option<u16>,
    /// Low-cardinality outcome for metrics and audit.
    pub outcome: &'static str,
    /// Why, when it failed (failure label).
    pub reason: Option<&'static str>,
    pub latency: Duration,
}

/// Sends messages upstream. The trait lets the session logic be tested without a network.
pub trait Deliver: Send + Sync + 'static {
    fn deliver(
        &self,
        credential: &Arc<UsableCredential>,
        envelope: &Envelope,
        message: &[u8],
    ) -> impl std::future::Future<Output = Delivery> + Send;

    /// Lets go of upstream state whose credential has expired (called periodically).
    fn sweep(&self) {}
}

struct Pool {
    /// Weak: the credential source decides how long plaintext lives; when it drops its
    /// copy and no session holds one, this pool (and lettre's copy of the password) goes too.
    credential: Weak<UsableCredential>,
    transport: Transport,
}

/// The lettre-backed upstream.
pub struct LettreUpstream {
    config: RelayConfig,
    pool: Mutex<Option<Pool>>,
    on_build: Box<dyn Fn() + Send + Sync>,
}

impl LettreUpstream {
    pub fn new(config: RelayConfig, on_build: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            config,
            pool: Mutex::new(None),
            on_build: Box::new(on_build),
        }
    }

    /// Drops the pool if its credential is gone (called periodically by the server).
    pub fn sweep(&self) {
        if let Ok(mut pool) = self.pool.lock()
            && pool
                .as_ref()
                .is_some_and(|p| p.credential.strong_count() == 0)
        {
            *pool = None;
            tracing::debug!("upstream pool dropped: its credential expired from the cache");
        }
    }

    fn transport_for(&self, credential: &Arc<UsableCredential>) -> Result<Transport, Error> {
        let mut pool = self
            .pool
            .lock()
            .map_err(|_| Error::Tls("pool lock poisoned".into()))?;
        if let Some(p) = pool.as_ref()
            && p.credential.as_ptr() == Arc::as_ptr(credential)
        {
            return Ok(p.transport.clone());
        }
        let transport = build_transport(&self.config, credential)?;
        (self.on_build)();
        tracing::info!(
            credential = %credential.id(),
            fingerprint = %credential.sealed_fingerprint,
            "upstream SMTP pool built for the current credential"
        );
        *pool = Some(Pool {
            credential: Arc::downgrade(credential),
            transport: transport.clone(),
        });
        Ok(transport)
    }
}

impl Deliver for LettreUpstream {
    fn sweep(&self) {
        LettreUpstream::sweep(self);
    }

    async fn deliver(
        &self,
        credential: &Arc<UsableCredential>,
        envelope: &Envelope,
        message: &[u8],
    ) -> Delivery {
        let started = Instant::now();
        let transport = match self.transport_for(credential) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "upstream configuration unusable");
                return Delivery {
                    reply: Reply::new(451, "4.3.5", format!("upstream configuration: {e}")),
                    upstream_code: None,
                    outcome: "temporary_failure",
                    reason: Some(e.metric_label()),
                    latency: started.elapsed(),
                };
            }
        };
        let result = tokio::time::timeout(
            self.config.upstream_timeout,
            transport.send_raw(envelope, message),
        )
        .await;
        let latency = started.elapsed();
        match result {
            Err(_) => Delivery {
                reply: Reply::new(
                    451,
                    "4.4.2",
                    "upstream did not answer in time; try again later",
                ),
                upstream_code: None,
                outcome: "temporary_failure",
                reason: Some("upstream_timeout"),
                latency,
            },
            Ok(Ok(response)) => {
                let code = code_number(&response.code().to_string());
                Delivery {
                    reply: Reply::new(250, "2.0.0", "message accepted by upstream"),
                    upstream_code: code,
                    outcome: "relayed",
                    reason: None,
                    latency,
                }
            }
            Ok(Err(e)) => map_error(&e, latency),
        }
    }
}

fn code_number(text: &str) -> Option<u16> {
    text.parse().ok()
}

/// Maps a lettre error to what the application is told. Only a permanent refusal of the
/// message itself is permanent; everything about the path (network, TLS, AUTH) is temporary:
/// the message is fine and may go through once the operator fixes the path.
fn map_error(e: &lettre::transport::smtp::Error, latency: Duration) -> Delivery {
    let code = e.status().and_then(|c| code_number(&c.to_string()));
    let detail = sanitize(&error_chain(e));
    let (reply, outcome, reason) = match code {
        Some(530 | 534 | 535 | 538) => (
            Reply::new(
                454,
                "4.7.0",
                format!(
                    "upstream authentication failed for the credential's user (re-seal the password?): {detail}"
                ),
            ),
            "temporary_failure",
            "upstream_auth",
        ),
        Some(c) if e.is_permanent() => (
            // Upstream's own enhanced code is part of its text.
            Reply::new(
                c,
                "",
                format!("upstream refused the message: {}", upstream_text(&detail)),
            ),
            "upstream_rejected",
            "upstream_permanent",
        ),
        Some(c) => (
            Reply::new(
                c.clamp(400, 499),
                "",
                format!("upstream deferred the message: {}", upstream_text(&detail)),
            ),
            "temporary_failure",
            "upstream_transient",
        ),
        None if e.is_tls() || is_tls_failure(e) => (
            Reply::new(
                454,
                "4.7.5",
                format!("upstream TLS failed (certificate not verified?): {detail}"),
            ),
            "temporary_failure",
            "upstream_tls",
        ),
        None if e.is_timeout() => (
            Reply::new(451, "4.4.2", format!("upstream timed out: {detail}")),
            "temporary_failure",
            "upstream_timeout",
        ),
        None => (
            Reply::new(451, "4.4.1", format!("upstream unavailable: {detail}")),
            "temporary_failure",
            "upstream_unavailable",
        ),
    };
    Delivery {
        reply,
        upstream_code: code,
        outcome,
        reason: Some(reason),
        latency,
    }
}

/// lettre's Display says "permanent error (550): text"; keep the server's text.
fn upstream_text(detail: &str) -> &str {
    detail.split_once("): ").map(|(_, t)| t).unwrap_or(detail)
}

/// lettre reports a failed handshake as a connection error; the rustls error is in the chain.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// The error and its causes, each said once (lettre's Display already repeats its source).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    for _ in 0..4 {
        let Some(s) = source else { break };
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn build_transport(
    config: &RelayConfig,
    credential: &UsableCredential,
) -> Result<Transport, Error> {
    let endpoint = credential.smtp.as_ref().ok_or(Error::NoSmtpEndpoint)?;
    let tls = match endpoint.tls {
        TlsMode::None if endpoint.insecure => Tls::None,
        TlsMode::None => return Err(Error::PlaintextNotAllowed),
        mode => {
            let mut builder = TlsParameters::builder(endpoint.host.clone());
            if let Some(pem) = &endpoint.ca_pem {
                // The named CA replaces the system roots: that is what the spec bound.
                let ca = Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| Error::CaPem(e.to_string()))?;
                builder = builder
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(ca);
            }
            let params = builder
                .build_rustls()
                .map_err(|e| Error::Tls(e.to_string()))?;
            if mode == TlsMode::Implicit {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            }
        }
    };
    // The one place the plaintext leaves MailPassword: into lettre's AUTH, over verified TLS.
    let credentials = Credentials::new(
        credential.username.clone(),
        credential.password.expose().to_owned(),
    );
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(endpoint.host.as_str())
        .port(endpoint.port)
        .tls(tls)
        .credentials(credentials)
        .authentication(vec![Mechanism::Plain, Mechanism::Login])
        .hello_name(ClientId::Domain(config.hostname.clone()))
        .timeout(Some(config.upstream_timeout))
        .pool_config(
            PoolConfig::new()
                .max_size(config.upstream_pool_size.max(1))
                .idle_timeout(config.upstream_idle),
        )
        .build();
    Ok(transport)
}

/// The address as upstream gets it without SMTPUTF8: ASCII local part, and an
/// internationalized domain in its A-label form. `None` if it cannot be carried.
pub fn relay_address(address: &str) -> Option<Address> {
    let (local, domain) = address.rsplit_once('@')?;
    if !local.is_ascii() {
        return None;
    }
    if domain.is_ascii() {
        return address.parse().ok();
    }
    let ascii = idna::domain_to_ascii_strict(domain).ok()?;
    format!("{local}@{ascii}").parse().ok()
}

/// The lettre envelope for what the application gave (already checked by the session).
pub fn envelope(from: &str, to: &[String]) -> Result<Envelope, String> {
    let from = relay_address(from).ok_or("sender cannot be relayed")?;
    let to = to
        .iter()
        .map(|t| relay_address(t).ok_or("recipient cannot be relayed"))
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(from), to).map_err(|e| e.to_string())
}
