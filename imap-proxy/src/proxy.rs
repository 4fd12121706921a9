//! Accepting application connections and running one session per connection.

use std::future::Future;
use std::sync::Arc;

use mailcred_core::credential::CredentialSource;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::ImapProxyConfig;
use crate::error::Error;
use crate::metrics::ImapMetrics;
use crate::session;
use crate::upstream::TlsConfigs;

/// The IMAP proxy of one sidecar. Cheap to clone.
#[derive(Clone)]
pub struct ImapProxy {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: ImapProxyConfig,
    pub source: Arc<dyn CredentialSource>,
    pub metrics: ImapMetrics,
    pub tls: TlsConfigs,
    connections: Arc<Semaphore>,
    shutdown_tx: watch::Sender<bool>,
}

impl ImapProxy {
    pub fn new(
        config: ImapProxyConfig,
        source: Arc<dyn CredentialSource>,
        metrics: ImapMetrics,
    ) -> Self {
        let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let (shutdown_tx, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                config,
                source,
                metrics,
                tls: TlsConfigs::default(),
                connections,
                shutdown_tx,
            }),
        }
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
        if !local.ip().is_loopback() && !self.inner.config.allow_non_loopback {
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
        let _ = self.inner.shutdown_tx.send(true);
        let grace = self.inner.config.shutdown_grace;
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
        let Ok(_permit) = self.inner.connections.clone().try_acquire_owned() else {
            let _ = tokio::time::timeout(
                self.inner.config.app_io_timeout,
                stream.write_all(b"* BYE [UNAVAILABLE] Too many connections\r\n"),
            )
            .await;
            self.inner
                .metrics
                .sessions
                .get_or_create(&crate::metrics::OutcomeLabels {
                    outcome: "too_many_connections",
                })
                .inc();
            return;
        };
        let _ = stream.set_nodelay(true);
        let shutdown = self.inner.shutdown_tx.subscribe();
        session::run(&self.inner, stream, shutdown).await;
    }
}
