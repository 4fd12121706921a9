//! Account-set mode: the application picks the account with AUTH (the account's name as
//! the authentication id, the local token as the password), and the session then takes
//! every credential and policy from that account's source. Whether the account is unknown,
//! refused by the directory or the token is wrong, the application hears the same 535 after
//! the same work: the token is compared in constant time and the directory asked in every
//! case, so accounts cannot be probed.

use std::sync::Arc;

use mailcred_core::credential::CredentialSource;
use mailcred_core::local_login::{LocalLogin, pick_account};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::metrics::AccountAuthLabel;
use crate::upstream::Upstream;

impl<U: Upstream, S: AsyncRead + AsyncWrite + Unpin> Session<'_, U, S> {
    /// Whether the relay serves an account set.
    pub(super) fn account_mode(&self) -> bool {
        self.shared.accounts.get().is_some()
    }

    /// The credential source this session uses now: the relay's one, or the picked
    /// account's as the directory has it now (`None` before AUTH, and once the account was
    /// deleted, its access revoked or its lifetime ended).
    pub(super) fn source(&self) -> Option<Arc<dyn CredentialSource>> {
        match self.shared.accounts.get() {
            None => Some(self.shared.source.clone()),
            Some(directory) => self.account.as_deref().and_then(|a| directory.account(a)),
        }
    }

    /// The id audit lines name when no credential was decrypted: the loaded resource's, or
    /// the picked account's as it was at AUTH when it is gone.
    pub(super) fn audit_id(&self) -> String {
        match self.source().and_then(|s| s.outline()) {
            Some(outline) => outline.id,
            None => self
                .account_id
                .clone()
                .or_else(|| self.account.clone())
                .unwrap_or_default(),
        }
    }

    /// Checks an AUTH of account-set mode and, when it passes, picks the account
    /// (`mailcred_core::local_login::pick_account`: every refusal takes the same path).
    pub(super) fn pick_account(&mut self, login: &LocalLogin) -> bool {
        let Some(directory) = self.shared.accounts.get() else {
            return false;
        };
        let token = self
            .shared
            .config
            .local_token
            .as_deref()
            .unwrap_or_default();
        let (outcome, picked) = pick_account(directory.as_ref(), token.as_bytes(), login);
        self.shared
            .metrics
            .account_auth
            .get_or_create(&AccountAuthLabel {
                outcome: outcome.as_str(),
            })
            .inc();
        match picked {
            Some(picked) => {
                tracing::info!(account = picked.name, "SMTP session picked its account");
                // For audit lines written once the account is gone.
                self.account_id = picked.source.outline().map(|o| o.id);
                self.account = Some(picked.name);
                true
            }
            // The name is not logged: an application that mixed up the fields may have
            // put a password there.
            None => {
                tracing::info!(outcome = outcome.as_str(), "SMTP account AUTH refused");
                false
            }
        }
    }
}
