//! The authenticated upstream: one lettre pool per decrypted credential, rebuilt when the
//! credential changes (re-seal, or re-decrypt after the cache TTL), and dropped when the
//! credential source lets go of the plaintext.

// lettre 0.11 marks AsyncNetworkStream "not meant to be public"; it is the only way to run
// lettre's protocol over our own TCP_NODELAY socket. Pinned to lettre 0.11.
#![allow(deprecated)]

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::Address;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncNetworkStream, AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore,
    TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use mailcred_core::crd::TlsMode;
use mailcred_core::credential::UsableCredential;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

use crate::config::RelayConfig;
use crate::error::Error;
use crate::reply::{Reply, sanitize};

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

/// How long an idle pooled connection is trusted without a NOOP probe.
const TRUST_IDLE: Duration = Duration::from_secs(2);

/// Where and how to connect, for one decrypted credential.
struct Target {
    host: String,
    port: u16,
    mode: TlsMode,
    tls: Option<TlsParameters>,
    credentials: Credentials,
    hello: ClientId,
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

struct Pool {
    /// Weak: the credential source decides how long plaintext lives; when it drops its
    /// copy and no session holds one, this pool (and lettre's copy of the password) goes too.
    credential: Weak<UsableCredential>,
    target: Arc<Target>,
    idle: Vec<Idle>,
}

/// The upstream: lettre speaks the protocol; connections are our own so that every socket
/// has TCP_NODELAY (lettre writes the message and the final `.` separately, which with Nagle
/// and delayed ACKs costs ~40 ms per message) and so that authenticated connections are
/// reused across messages.
pub struct LettreUpstream {
    config: RelayConfig,
    pool: Mutex<Option<Pool>>,
    on_build: Box<dyn Fn() + Send + Sync>,
}

/// Why a delivery failed before upstream answered the message.
enum SendError {
    Smtp(lettre::transport::smtp::Error),
    Connect(std::io::Error),
    Config(Error),
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
        if let Ok(mut pool) = self.pool.lock() {
            if pool
                .as_ref()
                .is_some_and(|p| p.credential.strong_count() == 0)
            {
                *pool = None;
                tracing::debug!("upstream pool dropped: its credential expired from the cache");
            } else if let Some(p) = pool.as_mut() {
                let max_idle = self.config.upstream_idle;
                p.idle.retain(|i| i.since.elapsed() < max_idle);
            }
        }
    }

    /// The target for this credential and, if one is idle, a pooled connection.
    fn checkout(
        &self,
        credential: &Arc<UsableCredential>,
    ) -> Result<(Arc<Target>, Option<Idle>), Error> {
        let mut guard = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = guard.as_mut()
            && p.credential.as_ptr() == Arc::as_ptr(credential)
        {
            let max_idle = self.config.upstream_idle;
            while let Some(idle) = p.idle.pop() {
                if idle.since.elapsed() < max_idle {
                    return Ok((p.target.clone(), Some(idle)));
                }
            }
            return Ok((p.target.clone(), None));
        }
        let target = Arc::new(build_target(&self.config, credential)?);
        (self.on_build)();
        tracing::info!(
            credential = %credential.id(),
            fingerprint = %credential.sealed_fingerprint,
            "upstream SMTP pool built for the current credential"
        );
        *guard = Some(Pool {
            credential: Arc::downgrade(credential),
            target: target.clone(),
            idle: Vec::new(),
        });
        Ok((target, None))
    }

    fn checkin(&self, target: &Arc<Target>, conn: AsyncSmtpConnection) {
        let mut guard = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = guard.as_mut()
            && Arc::ptr_eq(&p.target, target)
            && p.idle.len() < self.config.upstream_pool_size as usize
        {
            p.idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
        // Otherwise dropped: the socket closes (a rotated credential's connections end here).
    }

    async fn send(
        &self,
        credential: &Arc<UsableCredential>,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<lettre::transport::smtp::response::Response, SendError> {
        let (target, idle) = self.checkout(credential).map_err(SendError::Config)?;
        let mut conn = match idle {
            Some(i) if i.since.elapsed() < TRUST_IDLE => i.conn,
            Some(mut i) => {
                // Older idle connections may have been closed by the server: probe first.
                if i.conn.test_connected().await {
                    i.conn
                } else {
                    connect(&target).await?
                }
            }
            None => connect(&target).await?,
        };
        // lettre appends CRLF . CRLF itself; our message already ends with CRLF.
        let body = message.strip_suffix(b"\r\n").unwrap_or(message);
        // A failure aborts the connection inside lettre (QUIT + close); it is not reused,
        // and not retried: whether upstream took the message would be unknown.
        let response = conn.send(envelope, body).await.map_err(SendError::Smtp)?;
        self.checkin(&target, conn);
        Ok(response)
    }
}

async fn connect(target: &Target) -> Result<AsyncSmtpConnection, SendError> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(SendError::Connect)?;
    tcp.set_nodelay(true).map_err(SendError::Connect)?;
    let peer = tcp.peer_addr().map_err(SendError::Connect)?;
    let mut conn = match (target.mode, &target.tls) {
        (TlsMode::Implicit, Some(tls)) => {
            #[allow(deprecated)]
            let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
            stream
                .upgrade_tls(tls.clone())
                .await
                .map_err(SendError::Smtp)?;
            let tls_stream = ImplicitTls {
                inner: stream.compat(),
                peer,
            };
            AsyncSmtpConnection::connect_with_transport(Box::new(tls_stream), &target.hello)
                .await
                .map_err(SendError::Smtp)?
        }
        (TlsMode::Starttls, Some(tls)) => {
            let mut conn =
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &target.hello)
                    .await
                    .map_err(SendError::Smtp)?;
            conn.starttls(tls.clone(), &target.hello)
                .await
                .map_err(SendError::Smtp)?;
            conn
        }
        // Only reachable with `tls: none` + `insecure: true` (checked in build_target).
        _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &target.hello)
            .await
            .map_err(SendError::Smtp)?,
    };
    conn.auth(&[Mechanism::Plain, Mechanism::Login], &target.credentials)
        .await
        .map_err(SendError::Smtp)?;
    Ok(conn)
}

/// A TLS stream made by lettre (so one TLS configuration serves both modes) presented to
/// lettre's connection as a plain tokio stream, for implicit TLS on our own socket.
struct ImplicitTls {
    inner: Compat<AsyncNetworkStream>,
    peer: SocketAddr,
}

impl fmt::Debug for ImplicitTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImplicitTls")
            .field("peer", &self.peer)
            .finish()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.peer)
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
        let result = tokio::time::timeout(
            self.config.upstream_timeout,
            self.send(credential, envelope, message),
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
            Ok(Ok(response)) => Delivery {
                reply: Reply::new(250, "2.0.0", "message accepted by upstream"),
                upstream_code: code_number(&response.code().to_string()),
                outcome: "relayed",
                reason: None,
                latency,
            },
            Ok(Err(SendError::Smtp(e))) => map_error(&e, latency),
            Ok(Err(SendError::Connect(e))) => Delivery {
                reply: Reply::new(
                    451,
                    "4.4.1",
                    format!("upstream unavailable: {}", sanitize(&e.to_string())),
                ),
                upstream_code: None,
                outcome: "temporary_failure",
                reason: Some("upstream_unavailable"),
                latency,
            },
            Ok(Err(SendError::Config(e))) => {
                tracing::warn!(error = %e, "upstream configuration unusable");
                Delivery {
                    reply: Reply::new(451, "4.3.5", format!("upstream configuration: {e}")),
                    upstream_code: None,
                    outcome: "temporary_failure",
                    reason: Some(e.metric_label()),
                    latency,
                }
            }
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
        if part.starts_with(&text) {
            // The source repeats this error's text and adds to it.
            text = part;
        } else if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn build_target(config: &RelayConfig, credential: &UsableCredential) -> Result<Target, Error> {
    let endpoint = credential.smtp.as_ref().ok_or(Error::NoSmtpEndpoint)?;
    let tls = match endpoint.tls {
        TlsMode::None if endpoint.insecure => None,
        TlsMode::None => return Err(Error::PlaintextNotAllowed),
        TlsMode::Implicit | TlsMode::Starttls => {
            let mut builder = TlsParameters::builder(endpoint.host.clone());
            if let Some(pem) = &endpoint.ca_pem {
                // The named CA replaces the system roots: that is what the spec bound.
                let ca = Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| Error::CaPem(e.to_string()))?;
                builder = builder
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(ca);
            }
            Some(
                builder
                    .build_rustls()
                    .map_err(|e| Error::Tls(e.to_string()))?,
            )
        }
    };
    Ok(Target {
        host: endpoint.host.clone(),
        port: endpoint.port,
        mode: endpoint.tls,
        tls,
        // The one place the plaintext leaves MailPassword: into lettre's AUTH, over verified TLS.
        credentials: Credentials::new(
            credential.username.clone(),
            credential.password.expose().to_owned(),
        ),
        hello: ClientId::Domain(config.hostname.clone()),
    })
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
