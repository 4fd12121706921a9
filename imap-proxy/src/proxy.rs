//! Accepting application connections and running one session per connection.

use std::sync::Arc;

use mailcred_core::accept::{AcceptRules, serve_connections};
use mailcred_core::accounts::AccountDirectory;
use mailcred_core::credential::CredentialSource;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

    /// Accepts connections until `shutdown` is cancelled, then asks open sessions to end
    /// (`* BYE`) and waits for them up to the configured grace period
    /// (`mailcred_core::accept`: loopback only unless `allow_non_loopback` is set, DESIGN
    /// invariant 2; bounded connections; back-off on accept errors).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let config = &self.context.config;
        let rules = AcceptRules {
            name: "IMAP proxy",
            max_connections: config.max_connections,
            refusal: b"* BYE [UNAVAILABLE] Too many connections\r\n",
            shutdown_grace: config.shutdown_grace,
            allow_non_loopback: config.allow_non_loopback,
        };
        // Sessions hear of the shutdown through the context's watch (polled with their reads).
        let bye = {
            let (context, shutdown) = (self.context.clone(), shutdown.clone());
            tokio::spawn(async move {
                shutdown.cancelled().await;
                let _ = context.shutdown_tx.send(true);
            })
        };
        let refused = |_| self.context.count_session(Outcome::TooManyConnections);
        let served = serve_connections(listener, &rules, shutdown, refused, |stream, _, _| {
            let context = self.context.clone();
            async move {
                let shutdown = context.shutdown_tx.subscribe();
                session::run(&context, stream, shutdown).await;
            }
        })
        .await;
        bye.abort();
        served.map_err(|e| Error::Config(e.to_string()))
    }
}
