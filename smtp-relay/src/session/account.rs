//! Account-set mode: the application picks the account with AUTH (the account's name as
//! the authentication id, the local token as the password), and the session then takes
//! every credential and policy from that account's source. Whether the account is unknown,
//! refused by the directory or the token is wrong, the application hears the same 535 after
//! the same work: the token is compared in constant time and the directory asked in every
//! case, so accounts cannot be probed.

use std::sync::Arc;

use mailcred_core::credential::CredentialSource;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::metrics::AccountAuthLabel;
use crate::outcome::AccountAuth;
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

    /// Checks an AUTH of account-set mode and, when it passes, picks the account. Every
    /// refusal takes the same path: the directory is asked and the token compared whatever
    /// the other checks said.
    pub(super) fn pick_account(&mut self, authzid: &[u8], authcid: &[u8], password: &[u8]) -> bool {
        let Some(directory) = self.shared.accounts.get() else {
            return false;
        };
        let token = self
            .shared
            .config
            .local_token
            .as_deref()
            .unwrap_or_default();
        let token_ok = !token.is_empty() && constant_time_eq(token.as_bytes(), password);
        let name = std::str::from_utf8(authcid).ok();
        let found = directory.account(name.unwrap_or_default());
        let authz_ok = authzid.is_empty() || authzid == authcid;
        let outcome = match (token_ok, found.is_some(), authz_ok, name) {
            (false, _, _, _) => AccountAuth::WrongToken,
            (true, _, false, _) => AccountAuth::WrongAuthzid,
            (true, false, true, _) | (true, true, true, None) => AccountAuth::UnknownAccount,
            (true, true, true, Some(_)) => AccountAuth::Accepted,
        };
        self.shared
            .metrics
            .account_auth
            .get_or_create(&AccountAuthLabel {
                outcome: outcome.as_str(),
            })
            .inc();
        match (outcome, name) {
            (AccountAuth::Accepted, Some(name)) => {
                tracing::info!(account = name, "SMTP session picked its account");
                self.account = Some(name.to_owned());
                // For audit lines written once the account is gone.
                self.account_id = found.and_then(|s| s.outline()).map(|o| o.id);
                true
            }
            // The name is not logged: an application that mixed up the fields may have
            // put a password there.
            _ => {
                tracing::info!(outcome = outcome.as_str(), "SMTP account AUTH refused");
                false
            }
        }
    }
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
