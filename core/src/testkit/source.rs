//! Credential sources for front-end tests: one that always hands out the same credential,
//! one that always fails, one that never answers, and one that opens a sealed resource on
//! every request (the real envelope path, no cache).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use crate::crd::{MailCredential, Policy};
use crate::credential::{self, CredentialOutline, CredentialSource, UsableCredential};
use crate::kms::KmsProvider;
use crate::{Error, KmsError};

/// The outline a loaded resource gives (id and policy).
fn outline_of(credential: &UsableCredential) -> CredentialOutline {
    CredentialOutline {
        id: credential.id(),
        policy: credential.policy.clone(),
    }
}

/// The outline of a loaded resource `id` (namespace/name) with `policy`.
fn loaded_outline(id: &str, policy: Policy) -> CredentialOutline {
    CredentialOutline {
        id: id.to_owned(),
        policy,
    }
}

/// Hands out the same credential every time and counts the requests.
pub struct StaticSource {
    credential: Arc<UsableCredential>,
    outline: bool,
    requests: AtomicUsize,
}

impl StaticSource {
    pub fn new(credential: UsableCredential) -> Self {
        Self::shared(Arc::new(credential))
    }

    /// Hands out this very `Arc` (tests that watch its strong count).
    pub fn shared(credential: Arc<UsableCredential>) -> Self {
        Self {
            credential,
            outline: true,
            requests: AtomicUsize::new(0),
        }
    }

    /// Answers `outline()` with `None`, like a source that cannot tell without decrypting.
    pub fn without_outline(mut self) -> Self {
        self.outline = false;
        self
    }

    /// How many times `credential()` was called.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl CredentialSource for StaticSource {
    async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(self.credential.clone())
    }

    fn outline(&self) -> Option<CredentialOutline> {
        self.outline.then(|| outline_of(&self.credential))
    }
}

/// Fails every request with the error `make` builds (errors are not `Clone`).
pub struct FailingSource {
    make: fn() -> Error,
    outline: Option<CredentialOutline>,
}

impl FailingSource {
    pub fn new(make: fn() -> Error) -> Self {
        Self {
            make,
            outline: None,
        }
    }

    /// KMS cannot be reached: a transient failure (SMTP 4xx, IMAP `NO [UNAVAILABLE]`).
    pub fn kms_down() -> Self {
        Self::new(|| {
            Error::Kms(KmsError::Unreachable {
                key_id: "arn:aws:kms:us-east-1:111122223333:key/test".into(),
                detail: "connection refused".into(),
            })
        })
    }

    /// Still answers `outline()` (the resource is loaded, only decrypting fails).
    pub fn with_outline(mut self, id: &str, policy: Policy) -> Self {
        self.outline = Some(loaded_outline(id, policy));
        self
    }
}

#[async_trait]
impl CredentialSource for FailingSource {
    async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
        Err((self.make)())
    }

    fn outline(&self) -> Option<CredentialOutline> {
        self.outline.clone()
    }
}

/// Never answers `credential()` (KMS hanging): callers' timeouts are what ends the wait.
#[derive(Default)]
pub struct HangingSource {
    outline: Option<CredentialOutline>,
}

impl HangingSource {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_outline(mut self, id: &str, policy: Policy) -> Self {
        self.outline = Some(loaded_outline(id, policy));
        self
    }
}

#[async_trait]
impl CredentialSource for HangingSource {
    async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
        std::future::pending().await
    }

    fn outline(&self) -> Option<CredentialOutline> {
        self.outline.clone()
    }
}

/// Opens a sealed resource through [`credential::open`] on every request: no cache, so each
/// session runs the real envelope path. Counts the opens.
pub struct SealedSource<K> {
    resource: MailCredential,
    kms: K,
    opened: AtomicUsize,
}

impl<K: KmsProvider> SealedSource<K> {
    pub fn new(resource: MailCredential, kms: K) -> Self {
        Self {
            resource,
            kms,
            opened: AtomicUsize::new(0),
        }
    }

    /// How many times the sealed secret was opened.
    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    pub fn resource(&self) -> &MailCredential {
        &self.resource
    }
}

#[async_trait]
impl<K: KmsProvider> CredentialSource for SealedSource<K> {
    async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
        let credential = credential::open(&self.resource, &self.kms).await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(credential))
    }

    fn outline(&self) -> Option<CredentialOutline> {
        Some(CredentialOutline {
            id: format!(
                "{}/{}",
                self.resource
                    .metadata
                    .namespace
                    .as_deref()
                    .unwrap_or_default(),
                self.resource.metadata.name.as_deref().unwrap_or_default()
            ),
            policy: self.resource.spec.policy.clone(),
        })
    }
}

/// An account directory over fixed sources (front-end tests of account-set mode): the names
/// it holds are the accounts this pod may use; every other name is refused.
#[derive(Default)]
pub struct StaticDirectory {
    accounts: std::sync::Mutex<std::collections::BTreeMap<String, Arc<dyn CredentialSource>>>,
}

impl StaticDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) account `name`.
    pub fn insert(&self, name: &str, source: Arc<dyn CredentialSource>) {
        self.lock().insert(name.to_owned(), source);
    }

    /// Removes account `name` (as a deletion or an access revocation would).
    pub fn remove(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Arc<dyn CredentialSource>>>
    {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::accounts::AccountDirectory for StaticDirectory {
    fn account(&self, name: &str) -> Option<Arc<dyn CredentialSource>> {
        self.lock().get(name).cloned()
    }
}
