//! The pools of authenticated upstream connections, one per credential (`pools.rs`): rebuilt
//! when the credential changes (re-seal, or re-decrypt after the cache TTL) and dropped when
//! the credential source lets go of the plaintext. Bounded in size and idle time; a
//! connection idle for more than a moment is probed with NOOP before it is trusted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailcred_core::credential::UsableCredential;
use mailcred_core::upstream_auth::{OAuthLogin, UpstreamAuth};
use zeroize::Zeroizing;

use super::client::{Conn, bdat_writes, stuffed_chunks};
use super::connect::{Io, Target, TargetAuth, connect};
use super::errors::{Scrubber, UpstreamError};
use super::pools::{Idle, Limits, MAX_POOLS, Pools};
use super::{RelayAddress, Transaction, Upstream, Verdict};
use crate::config::RelayConfig;
use crate::error::Error;

/// How long an idle pooled connection is trusted without a NOOP probe.
const TRUST_IDLE: Duration = Duration::from_secs(2);
/// Message data is written in writes of about this size.
const WRITE_CHUNK: usize = 64 * 1024;

type PooledConn = Idle<Conn<Io>>;

struct Inner {
    config: RelayConfig,
    pools: Mutex<Pools<Target, Conn<Io>>>,
    on_build: Box<dyn Fn() + Send + Sync>,
}

/// The upstream submission server of the current credential.
#[derive(Clone)]
pub struct SmtpUpstream {
    inner: Arc<Inner>,
}

impl SmtpUpstream {
    pub fn new(config: RelayConfig, on_build: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::new(Inner {
                pools: Mutex::new(Pools::new(Limits {
                    per_credential: config.upstream_pool_size as usize,
                    total_idle: config.upstream_idle_total as usize,
                    max_pools: MAX_POOLS,
                })),
                config,
                on_build: Box::new(on_build),
            }),
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pools<Target, Conn<Io>>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The target for this credential and, if one is idle, a pooled connection.
    fn checkout(
        &self,
        credential: &Arc<UsableCredential>,
    ) -> Result<(Arc<Target>, Option<PooledConn>), Error> {
        let mut pools = self.lock();
        if let Some(found) = pools.checkout(credential, self.config.upstream_idle) {
            return Ok(found);
        }
        let target = Arc::new(build_target(&self.config, credential)?);
        (self.on_build)();
        tracing::info!(
            credential = %credential.id(),
            fingerprint = %credential.sealed_fingerprint,
            "upstream SMTP pool built for the credential"
        );
        pools.insert(credential, target.clone());
        Ok((target, None))
    }

    fn checkin(&self, id: &str, target: &Arc<Target>, mut conn: Conn<Io>) {
        conn.release_read_buffer();
        // A connection not taken back is dropped here: the socket closes (a rotated
        // credential's connections end this way).
        drop(self.lock().checkin(id, target, conn));
    }

    async fn session(
        &self,
        credential: &Arc<UsableCredential>,
    ) -> Result<(Arc<Target>, Conn<Io>), UpstreamError> {
        let (target, idle) = self.checkout(credential).map_err(UpstreamError::Config)?;
        if let Some(mut idle) = idle {
            if idle.since.elapsed() < TRUST_IDLE {
                return Ok((target, idle.conn));
            }
            // Older idle connections may have been closed by the server: probe first.
            if matches!(idle.conn.command(b"NOOP").await, Ok(r) if r.code == 250) {
                return Ok((target, idle.conn));
            }
        }
        let conn = connect(&target).await?;
        Ok((target, conn))
    }
}

/// One transaction on a pooled connection.
pub struct SmtpTransaction {
    inner: Arc<Inner>,
    /// The credential's id: the connection goes back only to that credential's pool.
    id: String,
    target: Arc<Target>,
    /// `None` once the connection failed: nothing more is sent on it.
    conn: Option<Conn<Io>>,
}

impl SmtpTransaction {
    fn scrubber(&self) -> &Scrubber {
        &self.target.scrubber
    }

    /// Sends one command; a failed connection is dropped (never reused).
    async fn command(&mut self, line: &[u8]) -> Result<super::UpstreamReply, UpstreamError> {
        let conn = self.conn.as_mut().ok_or(UpstreamError::Closed)?;
        let result = conn.command(line).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.inner.checkin(&self.id, &self.target, conn);
        }
    }

    async fn send_message(&mut self, message: &[u8]) -> Result<Verdict, UpstreamError> {
        let conn = self.conn.as_mut().ok_or(UpstreamError::Closed)?;
        if conn.chunking() {
            for write in bdat_writes(message, WRITE_CHUNK) {
                conn.write(&write).await?;
            }
            return end_of_data(&conn.read_reply().await?, self.scrubber());
        }
        let reply = self.command(b"DATA").await?;
        match reply.code {
            354 => {}
            400..=599 => return Ok(Verdict::from_reply(&reply, "message", self.scrubber())),
            _ => return Err(UpstreamError::Protocol("DATA was not answered with 354")),
        }
        let conn = self.conn.as_mut().ok_or(UpstreamError::Closed)?;
        for chunk in stuffed_chunks(message, WRITE_CHUNK) {
            conn.write(&chunk).await?;
        }
        end_of_data(&conn.read_reply().await?, self.scrubber())
    }
}

/// Upstream's verdict on the whole message (the reply to the end of DATA or to BDAT LAST).
fn end_of_data(
    reply: &super::UpstreamReply,
    scrubber: &Scrubber,
) -> Result<Verdict, UpstreamError> {
    match reply.code {
        // Only a completion reply is an acceptance; 354 (or any other intermediate reply)
        // means upstream and the relay disagree about where the message ended.
        200..=299 | 400..=599 => Ok(Verdict::from_reply(reply, "message", scrubber)),
        _ => Err(UpstreamError::Protocol(
            "the end of the data was not answered with 2xx, 4xx or 5xx",
        )),
    }
}

impl Transaction for SmtpTransaction {
    async fn recipient(&mut self, recipient: &RelayAddress) -> Verdict {
        match self
            .command(format!("RCPT TO:<{recipient}>").as_bytes())
            .await
        {
            Ok(reply) => Verdict::from_reply(&reply, "recipient", self.scrubber()),
            Err(e) => failure(&e),
        }
    }

    async fn data(mut self, message: &[u8]) -> Verdict {
        let verdict = match self.send_message(message).await {
            Ok(v) => v,
            Err(e) => {
                self.conn = None;
                failure(&e)
            }
        };
        self.release();
        verdict
    }

    async fn abort(mut self) {
        if matches!(self.command(b"RSET").await, Ok(r) if r.code == 250) {
            self.release();
        }
    }
}

fn failure(e: &UpstreamError) -> Verdict {
    // Auth-phase failures carry no text; the others are logged by class and detail.
    tracing::warn!(error = %e, "upstream failed");
    Verdict::failed(e)
}

impl Upstream for SmtpUpstream {
    type Transaction = SmtpTransaction;

    async fn begin(
        &self,
        credential: &Arc<UsableCredential>,
        sender: &RelayAddress,
    ) -> Result<SmtpTransaction, Verdict> {
        let (target, conn) = self
            .inner
            .session(credential)
            .await
            .map_err(|e| failure(&e))?;
        let mut tx = SmtpTransaction {
            inner: self.inner.clone(),
            id: credential.id(),
            target,
            conn: Some(conn),
        };
        match tx.command(format!("MAIL FROM:<{sender}>").as_bytes()).await {
            Ok(reply) if reply.is_positive_completion() => Ok(tx),
            Ok(reply) => {
                let verdict = Verdict::from_reply(&reply, "sender", tx.scrubber());
                tx.abort().await;
                Err(verdict)
            }
            Err(e) => Err(failure(&e)),
        }
    }

    fn sweep(&self) {
        let dropped = self.inner.lock().sweep(self.inner.config.upstream_idle);
        if dropped > 0 {
            tracing::debug!(
                dropped,
                "upstream pools dropped: their credentials expired from the cache"
            );
        }
    }
}

fn build_target(config: &RelayConfig, credential: &UsableCredential) -> Result<Target, Error> {
    let endpoint = credential.smtp.as_ref().ok_or(Error::NoSmtpEndpoint)?;
    // The one builder (invariant 3): system roots or exactly the spec's caPem.
    let tls = mailcred_core::tls::for_endpoint(endpoint)?;
    let (auth, scrubber) = match &credential.auth {
        UpstreamAuth::Password(password) => {
            let password = password.expose();
            (
                // The one place the plaintext leaves MailPassword: into AUTH, over verified TLS.
                TargetAuth::Password(Zeroizing::new(password.to_owned())),
                Scrubber::new(&credential.username, password),
            )
        }
        UpstreamAuth::OAuth(login) => (
            TargetAuth::OAuth(OAuthLogin {
                mechanism: login.mechanism,
                tokens: Arc::clone(&login.tokens),
            }),
            Scrubber::for_oauth(),
        ),
    };
    Ok(Target {
        host: endpoint.host.clone(),
        port: endpoint.port,
        mode: endpoint.tls,
        tls,
        username: credential.username.clone(),
        scrubber,
        auth,
        hello: config.hostname.clone(),
        timeout: config.upstream_timeout,
    })
}
