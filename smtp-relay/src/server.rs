//! The listener: accepts application connections (bounded), runs one session each, and on
//! shutdown stops accepting, lets in-flight messages finish within a grace period, then stops.

use std::sync::Arc;
use std::time::Duration;

use mailcred_core::accept::{AcceptRules, serve_connections};
use mailcred_core::accounts::AccountDirectory;
use mailcred_core::credential::CredentialSource;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::RelayConfig;
use crate::error::Error;
use crate::metrics::RelayMetrics;
use crate::session::Session;
use crate::shared::{BUDGET_UNIT, Shared};
use crate::upstream::{SmtpUpstream, Upstream};

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

    /// Serves until `shutdown` is cancelled, then lets in-flight messages finish within the
    /// grace period (`mailcred_core::accept`: loopback only unless `allow_non_loopback` is
    /// set, DESIGN invariant 2; bounded connections; back-off on accept errors).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let shared = self.shared;
        let config = &shared.config;
        let rules = AcceptRules {
            name: "SMTP relay",
            max_connections: config.max_connections,
            refusal: REFUSAL,
            shutdown_grace: config.shutdown_grace,
            allow_non_loopback: config.allow_non_loopback,
        };
        let sweeper = {
            let (shared, shutdown) = (shared.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut sweep = tokio::time::interval(SWEEP_EVERY);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = sweep.tick() => shared.upstream.sweep(),
                    }
                }
            })
        };
        let served = serve_connections(
            listener,
            &rules,
            shutdown,
            |_| {},
            |stream, _, token| {
                let shared = shared.clone();
                async move {
                    shared.metrics.open_connections.inc();
                    Session::new(&shared, stream, token).run().await;
                    shared.metrics.open_connections.dec();
                }
            },
        )
        .await;
        sweeper.abort();
        Ok(served?)
    }
}

/// The reply to a connection over the limit.
const REFUSAL: &[u8] = b"421 4.7.0 too many connections, try again later\r\n";
