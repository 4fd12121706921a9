//! `credential(name)`: the cached plaintext, or one KMS Decrypt per account however many
//! connections ask at once.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use mailcred_core::Error;
use mailcred_core::crd::MailCredential;
use mailcred_core::credential::{CredentialOutline, UsableCredential};

use super::super::{Cached, DropReason, open_bounded};
use super::{AccountSet, now_time};

/// Opening again because the account was re-sealed during a decrypt happens at most this
/// often per request (a re-seal per KMS round trip is not a real workload).
const OPEN_ATTEMPTS: usize = 2;

enum Lookup {
    Hit(Arc<UsableCredential>),
    /// Not cached: decrypt `resource` under `flight`.
    Miss {
        flight: Arc<tokio::sync::Mutex<()>>,
        resource: Arc<MailCredential>,
    },
}

impl AccountSet {
    /// The decrypted credential of account `name`, if this pod may use it now.
    pub async fn credential(&self, name: &str) -> Result<Arc<UsableCredential>, Error> {
        let flight = match self.lookup(name)? {
            Lookup::Hit(c) => return Ok(c),
            Lookup::Miss { flight, .. } => flight,
        };
        // This account's flight only: other accounts decrypt meanwhile.
        let _one_decrypt = flight.lock().await;
        for _ in 0..OPEN_ATTEMPTS {
            // Whoever held the flight before may have filled the cache.
            let resource = match self.lookup(name)? {
                Lookup::Hit(c) => return Ok(c),
                Lookup::Miss { resource, .. } => resource,
            };
            let opener = self.opener.get().ok_or(Error::NotLoaded)?;
            let opened = open_bounded(
                &resource,
                opener.kms.as_ref(),
                opener.tokens.as_deref(),
                self.kms_timeout,
                &self.metrics.source,
            )
            .await?;
            tracing::info!(
                credential = %opened.id(),
                fingerprint = %opened.sealed_fingerprint,
                "account credential decrypted"
            );
            if let Some(stored) = self.store(name, &resource, Arc::new(opened))? {
                return Ok(stored);
            }
        }
        Err(Error::NotLoaded)
    }

    /// What is known of account `name` without decrypting, if this pod may use it now.
    pub fn outline(&self, name: &str) -> Option<CredentialOutline> {
        let state = self.state();
        let account = state.accounts.get(name)?;
        if self.refusal(&account.resource, &now_time()).is_some() {
            return None;
        }
        Some(CredentialOutline {
            id: self.id(name),
            policy: account.resource.spec.policy.clone(),
        })
    }

    /// Checks the account, records the use, and answers from the cache if it can.
    fn lookup(&self, name: &str) -> Result<Lookup, Error> {
        let now = now_time();
        let mut guard = self.state();
        let state = &mut *guard;
        // Whatever went stale goes before anything is handed out.
        self.drop_if_stale(state, name, &now);
        let Some(account) = state.accounts.get_mut(name) else {
            self.publish(state);
            return Err(Error::Deleted { id: self.id(name) });
        };
        self.check(name, &account.resource, &now)?;
        account.last_used = Some(SystemTime::now());
        let resource = account.resource.clone();
        let flight = account.flight.clone();
        let cached = state.cache.touch(name).map(|c| {
            (
                Arc::ptr_eq(&c.resource, &resource),
                c.credential.clone(),
                c.decrypted_at,
            )
        });
        let Some((current, credential, decrypted_at)) = cached else {
            return Ok(Lookup::Miss { flight, resource });
        };
        if current {
            self.metrics.source.cache_hits.inc();
            return Ok(Lookup::Hit(credential));
        }
        // A policy or access edit: a new credential object (pools and limits follow), the
        // same secret, no KMS call. Staleness was checked above, so this reissues.
        match credential.reissue(&resource) {
            Some(reissued) => {
                let reissued = Arc::new(reissued);
                state
                    .cache
                    .insert(name, Cached::new(resource, reissued.clone(), decrypted_at));
                self.metrics.source.cache_hits.inc();
                Ok(Lookup::Hit(reissued))
            }
            None => {
                state.cache.remove(name);
                self.dropped(name, DropReason::Resealed);
                self.publish(state);
                Ok(Lookup::Miss { flight, resource })
            }
        }
    }

    /// Caches `opened` (decrypted from `resource`) unless the account changed meanwhile:
    /// deleted or no longer usable is an error (the plaintext is dropped here), re-sealed is
    /// `None` (open again), a policy edit reissues for the current version.
    fn store(
        &self,
        name: &str,
        resource: &Arc<MailCredential>,
        opened: Arc<UsableCredential>,
    ) -> Result<Option<Arc<UsableCredential>>, Error> {
        let now = now_time();
        let mut guard = self.state();
        let state = &mut *guard;
        let Some(account) = state.accounts.get(name) else {
            return Err(Error::Deleted { id: self.id(name) });
        };
        self.check(name, &account.resource, &now)?;
        let (resource, credential) = if Arc::ptr_eq(&account.resource, resource) {
            (resource.clone(), opened)
        } else {
            match opened.reissue(&account.resource) {
                Some(r) => (account.resource.clone(), Arc::new(r)),
                None => return Ok(None),
            }
        };
        let evicted = state.cache.insert(
            name,
            Cached::new(resource, credential.clone(), Instant::now()),
        );
        for old in evicted {
            self.dropped(
                old.resource.metadata.name.as_deref().unwrap_or_default(),
                DropReason::Evicted,
            );
        }
        self.publish(state);
        drop(guard);
        // The timer re-plans: this plaintext may have the earliest end.
        self.changed.notify_one();
        Ok(Some(credential))
    }
}
