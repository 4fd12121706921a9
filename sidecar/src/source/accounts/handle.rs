//! The per-connection view of one account: what `AccountDirectory::account` hands the
//! front-ends. It holds the set and the name, never a plaintext: every `credential()` goes
//! through the set's checks and cache.

use std::sync::Arc;

use async_trait::async_trait;
use mailcred_core::Error;
use mailcred_core::accounts::AccountDirectory;
use mailcred_core::credential::{CredentialOutline, CredentialSource, UsableCredential};

use super::{AccountSet, now_time};

/// Longest account name looked up (a MailCredential name is at most 253 characters).
const MAX_NAME: usize = 253;

struct AccountHandle {
    set: Arc<AccountSet>,
    name: String,
}

#[async_trait]
impl CredentialSource for AccountHandle {
    async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
        self.set.credential(&self.name).await
    }

    /// Re-read live: a policy edit reaches the next connection's EHLO and audit lines.
    fn outline(&self) -> Option<CredentialOutline> {
        self.set.outline(&self.name)
    }
}

impl AccountDirectory for AccountSet {
    /// `None` for an unknown account, one that does not list the pod's ServiceAccount and
    /// one whose lifetime ended, alike.
    fn account(&self, name: &str) -> Option<Arc<dyn CredentialSource>> {
        if name.is_empty() || name.len() > MAX_NAME {
            return None;
        }
        {
            let state = self.state();
            let account = state.accounts.get(name)?;
            if self.refusal(&account.resource, &now_time()).is_some() {
                return None;
            }
        }
        let set = self.me.upgrade()?;
        Some(Arc::new(AccountHandle {
            set,
            name: name.to_owned(),
        }))
    }
}
