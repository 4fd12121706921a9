//! The listener: accepts application connections (bounded), runs one session each, and on
//! shutdown stops accepting, lets in-flight messages finish within a grace period, then stops.

use std::sync::Arc;
use std::time::Duration;

use mailcred_core::accounts::AccountDirectory;
use mailcred_core::credential::{CredentialSource, UsableCredential};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::RelayConfig;
use crate::error::Error;
use crate::metrics::RelayMetrics;
use crate::session::Session;
use crate::shared::{BUDGET_UNIT, Shared};
use crate::upstream::{SmtpUpstream, Upstream};
use crate::wire::reply::Reply;

/// How often expired upstream pools are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// The SMTP relay of one credential.
pub struct SmtpRelay<U = SmtpUpstream> {
    pub(crate) shared: Arc<Shared<U>>,
}

impl SmtpRelay<SmtpUpstream> {
    /// A relay that delivers to the credential's `spec.smtp`.
    pub fn new(
        config: RelayConfig,
        source: Arc<dyn CredentialSource>,
        metrics: RelayMetrics,
    ) -> Self {
        let built = metrics.upstream_pools_built.clone();
        let upstream = SmtpUpstream::new(config.clone(), move || {
            built.inc();
        });
        Self::with_upstream(config, source, metrics, upstream)
    }

    /// A relay of an account set ([`SmtpRelay::with_accounts`]) without a source of its own.
    pub fn for_accounts(
        config: RelayConfig,
        accounts: Arc<dyn AccountDirectory>,
        metrics: RelayMetrics,
    ) -> Result<Self, Error> {
        Self::new(config, Arc::new(NoSource), metrics).with_accounts(accounts)
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

impl<U: Upstream> SmtpRelay<U> {
    /// A relay with another upstream (tests).
    pub fn with_upstream(
        config: RelayConfig,
        source: Arc<dyn CredentialSource>,
        metrics: RelayMetrics,
        upstream: U,
    ) -> Self {
        Self {
            shared: Arc::new(Shared::new(config, source, metrics, upstream)),
        }
    }

    /// Account-set mode: the application picks the account per connection with AUTH PLAIN or
    /// AUTH LOGIN (the account's name as the user, the local token as the password), and each
    /// session then uses that account's source; the source given to the constructor is not
    /// used any more. Refused without a non-empty `local_token`
    /// ([`RelayConfig::check_account_mode`]): the sidecar reports the error at startup.
    pub fn with_accounts(self, accounts: Arc<dyn AccountDirectory>) -> Result<Self, Error> {
        self.shared.config.check_account_mode()?;
        self.shared
            .accounts
            .set(accounts)
            .map_err(|_| Error::AccountDirectoryTwice)?;
        Ok(self)
    }

    /// Message memory not held by any session right now, in bytes.
    pub fn message_memory_free(&self) -> usize {
        self.shared.message_memory.available_permits() * BUDGET_UNIT
    }

    /// A handle that reads [`SmtpRelay::message_memory_free`] after the relay moved into
    /// [`SmtpRelay::serve`].
    pub fn memory_probe(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let budget = self.shared.message_memory.clone();
        move || budget.available_permits() * BUDGET_UNIT
    }

    /// Serves until `shutdown` is cancelled, then drains within the grace period.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let shared = self.shared;
        let permits = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
        let mut sessions = JoinSet::new();
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            while sessions.try_join_next().is_some() {}
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sweep.tick() => shared.upstream.sweep(),
                accepted = listener.accept() => {
                    let (mut stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "connection refused: too many open connections");
                        let write_timeout = shared.config.write_timeout;
                        sessions.spawn(async move {
                            let reply = Reply::new(421, "4.7.0", "too many connections, try again later");
                            let _ = tokio::time::timeout(write_timeout, stream.write_all(&reply.to_wire())).await;
                        });
                        continue;
                    };
                    let shared = shared.clone();
                    let token = shutdown.clone();
                    sessions.spawn(async move {
                        shared.metrics.open_connections.inc();
                        Session::new(&shared, stream, token).run().await;
                        shared.metrics.open_connections.dec();
                        drop(permit);
                    });
                }
            }
        }
        drop(listener);
        let open = sessions.len();
        tracing::info!(
            open,
            "SMTP relay stopped accepting; waiting for in-flight messages"
        );
        let drained = tokio::time::timeout(shared.config.shutdown_grace, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = sessions.len(),
                "shutdown grace period over; closing remaining SMTP sessions"
            );
            sessions.abort_all();
            while sessions.join_next().await.is_some() {}
        }
        Ok(())
    }
}
