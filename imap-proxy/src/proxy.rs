//! Accepting application connections and running one session per connection.

use std::future::Future;
use std::sync::Arc;

use mailcred_core::accounts::AccountDirectory;
use mailcred_core::credential::{CredentialSource, UsableCredential};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::config::ImapProxyConfig;
use crate::context::SessionContext;
use crate::error::Error;
use crate::metrics::ImapMetrics;
use crate::outcome::Outcome;
use crate::session;

/// The IMAP proxy of one sidecar. Cheap to clone.
#[derive(Clone)]
pub struct ImapProxy {
    context: Arc<SessionContext>,
}

impl ImapProxy {
    pub fn new(
        config: ImapProxyConfig,
        source: Arc<dyn CredentialSource>,
        metrics: ImapMetrics,
    ) -> Self {
        Self {
            context: Arc::new(SessionContext::new(config, source, metrics)),
        }
    }

    /// A proxy of an account set ([`ImapProxy::with_accounts`]) without a source of its own.
    pub fn for_accounts(
        config: ImapProxyConfig,
        accounts: Arc<dyn AccountDirectory>,
        metrics: ImapMetrics,
    ) -> Result<Self, Error> {
        Self::new(config, Arc::new(NoSource), metrics).with_accounts(accounts)
    }

    /// Account-set mode: the application picks the account per connection with `LOGIN
    /// <account> <token>` or `AUTHENTICATE PLAIN` (authentication id = the account's name,
    /// password = the local token), and each session then uses that account's source; the
    /// source given to the constructor is not used any more. Refused without a local token
    /// ([`ImapProxyConfig::check_account_mode`]): the sidecar reports the error at startup.
    /// Call it before the proxy is cloned or serving.
    pub fn with_accounts(self, accounts: Arc<dyn AccountDirectory>) -> Result<Self, Error> {
        self.context.config.check_account_mode()?;
        self.context
            .accounts
            .set(accounts)
            .map_err(|_| Error::Config("the proxy already serves an account directory".into()))?;
        Ok(self)
    }

    /// Accepts connections until `shutdown` completes, then asks open sessions to end
    /// (`* BYE`) and waits for them up to the configured grace period. The listener must be
    /// on a loopback address unless `allow_non_loopback` is set (DESIGN invariant 2).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let local = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("listener has no address: {e}")))?;
        if !local.ip().is_loopback() && !self.context.config.allow_non_loopback {
            return Err(Error::Config(format!(
                "refusing to serve IMAP on non-loopback address {local}: applications must reach the proxy only from inside the pod"
            )));
        }
        tracing::info!(address = %local, "IMAP proxy listening");
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        let proxy = self.clone();
                        sessions.spawn(async move { proxy.serve_connection(stream).await });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting an IMAP connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        let _ = self.context.shutdown_tx.send(true);
        let grace = self.context.config.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = sessions.len(),
                "IMAP sessions still open after the shutdown grace period; closing them"
            );
            sessions.shutdown().await;
        }
        Ok(())
    }

    /// Serves one application connection to its end.
    pub async fn serve_connection(&self, mut stream: TcpStream) {
        let Ok(_permit) = self.context.connections.clone().try_acquire_owned() else {
            let _ = tokio::time::timeout(
                self.context.config.app_io_timeout,
                stream.write_all(b"* BYE [UNAVAILABLE] Too many connections\r\n"),
            )
            .await;
            self.context.count_session(Outcome::TooManyConnections);
            return;
        };
        let _ = stream.set_nodelay(true);
        let shutdown = self.context.shutdown_tx.subscribe();
        session::run(&self.context, stream, shutdown).await;
    }
}

/// The constructor's source in account-set mode, where sessions use their account's: it
/// never hands out anything.
struct NoSource;

#[async_trait::async_trait]
impl CredentialSource for NoSource {
    async fn credential(&self) -> Result<Arc<UsableCredential>, mailcred_core::Error> {
        Err(mailcred_core::Error::NotLoaded)
    }
}
