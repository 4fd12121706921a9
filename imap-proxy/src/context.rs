//! What every session of one proxy shares: configuration, the credential source (or the
//! account directory), metrics, the connection limit and the shutdown signal.

use std::sync::{Arc, OnceLock};

use mailcred_core::accounts::AccountDirectory;
use mailcred_core::credential::CredentialSource;
use tokio::sync::watch;

use crate::config::ImapProxyConfig;
use crate::metrics::{CommandLabels, DenialLabels, ImapMetrics, OutcomeLabels};
use crate::outcome::{Outcome, Reason};

pub(crate) struct SessionContext {
    pub config: ImapProxyConfig,
    pub source: Arc<dyn CredentialSource>,
    /// Account-set mode: the accounts the application may pick with LOGIN (then `source`
    /// is not used).
    pub accounts: OnceLock<Arc<dyn AccountDirectory>>,
    pub metrics: ImapMetrics,
    pub shutdown_tx: watch::Sender<bool>,
}

impl SessionContext {
    pub fn new(
        config: ImapProxyConfig,
        source: Arc<dyn CredentialSource>,
        metrics: ImapMetrics,
    ) -> Self {
        let (shutdown_tx, _) = watch::channel(false);
        Self {
            config,
            source,
            accounts: OnceLock::new(),
            metrics,
            shutdown_tx,
        }
    }

    pub fn count_session(&self, outcome: Outcome) {
        self.metrics
            .sessions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub fn count_denial(&self, reason: Reason) {
        self.metrics
            .denials
            .get_or_create(&DenialLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub fn count_command(&self, label: &'static str) {
        self.metrics
            .commands
            .get_or_create(&CommandLabels { command: label })
            .inc();
    }
}
