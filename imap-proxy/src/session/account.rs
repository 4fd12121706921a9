//! Account-set mode: the application picks the account with its login (the account's name
//! as the user, the local token as the password), and the session then takes its credential
//! and policy from that account's source, asked again before every command and on every
//! tick, so a deleted or revoked account's session ends within a tick. Whether the account
//! is unknown, refused by the directory or the token is wrong, the application hears the
//! same NO after the same work: the token is compared in constant time and the directory
//! asked in every case, so accounts cannot be probed.

use std::sync::Arc;

use mailcred_core::credential::CredentialSource;

use mailcred_core::local_login::pick_account;

use super::app_login::AppLogin;
use super::state::Session;
use crate::metrics::OutcomeLabels;

impl Session<'_> {
    pub(super) fn account_mode(&self) -> bool {
        self.ctx.accounts.get().is_some()
    }

    /// The credential source this session uses now: the proxy's one, or the picked
    /// account's as the directory has it now (`None` before login, and once the account was
    /// deleted, its access revoked or its lifetime ended).
    pub(super) fn source(&self) -> Option<Arc<dyn CredentialSource>> {
        match self.ctx.accounts.get() {
            None => Some(self.ctx.source.clone()),
            Some(directory) => self.account.as_deref().and_then(|a| directory.account(a)),
        }
    }

    /// Checks a login of account-set mode and, when it passes, picks the account
    /// (`mailcred_core::local_login::pick_account`: every refusal takes the same path).
    pub(super) fn pick_account(&mut self, login: &AppLogin) -> bool {
        let Some(directory) = self.ctx.accounts.get() else {
            return false;
        };
        let token = self
            .ctx
            .config
            .local_token
            .as_ref()
            .map(|t| t.expose().as_bytes())
            .unwrap_or_default();
        let (outcome, picked) = pick_account(directory.as_ref(), token, login);
        self.ctx
            .metrics
            .account_logins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
        match picked {
            Some(picked) => {
                tracing::info!(account = picked.name, "IMAP session picked its account");
                self.account = Some(picked.name);
                true
            }
            // The name is not logged: an application that mixed up the fields may have
            // put a password there.
            None => {
                tracing::info!(outcome = outcome.as_str(), "IMAP account login refused");
                false
            }
        }
    }
}
