//! The credential source of the sidecar: the latest MailCredential (from a file or the
//! Kubernetes API, published on a watch channel), opened on first use by
//! `mailcred_core::credential::open`, the plaintext kept for at most the TTL, mlocked while
//! cached, re-opened when the sealed secret changes. Access is checked on every hand-out
//! (`credential()` and `outline()`): a pod whose ServiceAccount leaves
//! `spec.access.serviceAccounts` is refused at once and the cached plaintext dropped.
//!
//! Sessions hold the `Arc<UsableCredential>` they started with; the cache only hands out new
//! ones. When the cache drops its `Arc` (TTL, rotation) and the last session ends, the
//! password is zeroized (MailPassword drops its SecretString).

pub mod accounts;
pub mod file;
pub mod kube;
mod metrics;
mod mlock;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mailcred_core::crd::MailCredential;
use mailcred_core::credential::{self, CredentialOutline, CredentialSource, UsableCredential};
use mailcred_core::kms::KmsProvider;
use mailcred_core::upstream_auth::TokenSourceFactory;
use mailcred_core::{Error, KmsError};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

pub use metrics::{DropReason, SourceMetrics};

/// The latest version of the resource, as the file or API watcher last saw it.
pub type ResourceFeed = watch::Receiver<Option<Arc<MailCredential>>>;

struct Cached {
    /// The pages of `credential`'s password stay out of swap while cached (dropped first).
    _locked: Option<mlock::LockedRange>,
    /// The resource version this was built from (pointer identity: a new version is a new Arc).
    resource: Arc<MailCredential>,
    credential: Arc<UsableCredential>,
    decrypted_at: Instant,
}

impl Cached {
    fn new(
        resource: Arc<MailCredential>,
        credential: Arc<UsableCredential>,
        decrypted_at: Instant,
    ) -> Self {
        // Locking needs the address of the plaintext, not its use: nothing is read here.
        // A token source keeps its own secrets; only a sealed password lives here.
        let locked = credential
            .auth
            .password()
            .map(|p| mlock::LockedRange::lock(p.expose().as_bytes()));
        Self {
            _locked: locked,
            resource,
            credential,
            decrypted_at,
        }
    }
}

/// Decrypt-on-demand cache over a resource feed.
pub struct CachedCredentialSource {
    feed: ResourceFeed,
    kms: Arc<dyn KmsProvider>,
    ttl: Duration,
    kms_timeout: Duration,
    service_account: Option<String>,
    // An async mutex: concurrent first requests wait for one decrypt instead of each calling KMS.
    cache: Mutex<Option<Cached>>,
    /// `namespace/name` of the last resource seen: tells "deleted" from "not loaded yet".
    last_seen: std::sync::Mutex<Option<String>>,
    metrics: SourceMetrics,
    /// Builds the token source of an OAuth credential (mailcred-oauth). It lives inside the
    /// cached credential, so the TTL and re-seal drops take its cached tokens and rotated
    /// refresh token with the credential.
    tokens: Option<Arc<dyn TokenSourceFactory>>,
}

impl CachedCredentialSource {
    pub fn new(
        feed: ResourceFeed,
        kms: Arc<dyn KmsProvider>,
        ttl: Duration,
        service_account: Option<String>,
        metrics: SourceMetrics,
    ) -> Self {
        Self {
            feed,
            kms,
            ttl,
            kms_timeout: KMS_TIMEOUT,
            service_account,
            cache: Mutex::new(None),
            last_seen: std::sync::Mutex::new(None),
            metrics,
            tokens: None,
        }
    }

    /// Lets OAuth credentials be opened with `factory`.
    pub fn with_tokens(mut self, factory: Arc<dyn TokenSourceFactory>) -> Self {
        self.tokens = Some(factory);
        self
    }

    /// Whether a resource has been loaded (readiness).
    pub fn loaded(&self) -> bool {
        self.feed.borrow().is_some()
    }

    /// Drops the plaintext once the TTL has passed, the resource was deleted or re-sealed, or
    /// the pod's ServiceAccount left its access list (called on every feed change and
    /// periodically, so an unused password does not outlive any of these waiting for the next
    /// request).
    pub async fn expire(&self) {
        let current = self.current();
        let mut cache = self.cache.lock().await;
        self.drop_if_stale(&mut cache, current.as_deref());
    }

    /// Runs [`Self::expire`] whenever the feed changes and every `every` until shutdown.
    pub async fn expire_until(&self, every: Duration, shutdown: CancellationToken) {
        let mut feed = self.feed.clone();
        let mut feed_open = true;
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                changed = feed.changed(), if feed_open => feed_open = changed.is_ok(),
            }
            self.expire().await;
        }
    }

    /// Why the cached plaintext may no longer be handed out for `current`, if it may not.
    fn staleness(&self, cached: &Cached, current: Option<&MailCredential>) -> Option<DropReason> {
        let Some(resource) = current else {
            return Some(DropReason::Deleted);
        };
        if self.authorize(resource).is_err() {
            Some(DropReason::AccessRevoked)
        } else if !cached.credential.opened_from(resource) {
            Some(DropReason::Resealed)
        } else if cached.decrypted_at.elapsed() >= self.ttl {
            Some(DropReason::Ttl)
        } else {
            None
        }
    }

    /// Empties the cache (unlocking and zeroizing the plaintext once no session holds it)
    /// when it is stale for `current`.
    fn drop_if_stale(&self, cache: &mut Option<Cached>, current: Option<&MailCredential>) {
        let Some(why) = cache.as_ref().and_then(|c| self.staleness(c, current)) else {
            return;
        };
        *cache = None;
        self.metrics.dropped(why);
        tracing::debug!(
            reason = why.label(),
            "decrypted credential dropped: {}",
            why.describe()
        );
    }

    /// The sidecar's own access check (after the webhook and RBAC), made on every hand-out:
    /// the access list can change while a password is cached.
    fn authorize(&self, resource: &MailCredential) -> Result<(), Error> {
        let Some(sa) = &self.service_account else {
            return Ok(());
        };
        if resource
            .spec
            .access
            .service_accounts
            .iter()
            .any(|a| a == sa)
        {
            return Ok(());
        }
        Err(Error::AccessDenied {
            id: resource_id(resource),
            service_account: sa.clone(),
        })
    }

    /// The resource now in the feed, remembering its id for [`Error::Deleted`].
    fn current(&self) -> Option<Arc<MailCredential>> {
        let resource = self.feed.borrow().clone();
        if let Some(r) = &resource {
            let id = resource_id(r);
            let mut last = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_deref() != Some(id.as_str()) {
                *last = Some(id);
            }
        }
        resource
    }

    fn missing(&self) -> Error {
        match self
            .last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            Some(id) => Error::Deleted { id },
            None => Error::NotLoaded,
        }
    }

    /// [`credential::open`] bounded by the KMS timeout, counted by result.
    async fn open(&self, resource: &MailCredential) -> Result<UsableCredential, Error> {
        open_bounded(
            resource,
            self.kms.as_ref(),
            self.tokens.as_deref(),
            self.kms_timeout,
            &self.metrics,
        )
        .await
    }
}

/// KMS calls wait at most this long (then [`KmsError::Timeout`]).
const KMS_TIMEOUT: Duration = Duration::from_secs(20);

/// [`credential::open_with_tokens`] bounded by `kms_timeout`, counted by result (the single
/// source and the account set open the same way).
async fn open_bounded(
    resource: &MailCredential,
    kms: &dyn KmsProvider,
    tokens: Option<&dyn TokenSourceFactory>,
    kms_timeout: Duration,
    metrics: &SourceMetrics,
) -> Result<UsableCredential, Error> {
    let opened = tokio::time::timeout(
        kms_timeout,
        credential::open_with_tokens(resource, kms, tokens),
    )
    .await
    .unwrap_or_else(|_| {
        Err(Error::Kms(KmsError::Timeout {
            key_id: resource
                .spec
                .sealed_secret
                .as_ref()
                .map(|s| s.kms.key_id.clone())
                .unwrap_or_default(),
            seconds: kms_timeout.as_secs(),
        }))
    });
    metrics.decrypted(match &opened {
        Ok(_) => "ok",
        Err(e) => e.metric_label(),
    });
    opened
}

/// `namespace/name` of a resource, as [`UsableCredential::id`].
fn resource_id(resource: &MailCredential) -> String {
    format!(
        "{}/{}",
        resource.metadata.namespace.as_deref().unwrap_or_default(),
        resource.metadata.name.as_deref().unwrap_or_default()
    )
}

#[async_trait]
impl CredentialSource for CachedCredentialSource {
    /// Nothing for a credential this pod may not use: not even its policy is served.
    fn outline(&self) -> Option<CredentialOutline> {
        let resource = self.current()?;
        self.authorize(&resource).ok()?;
        let id = self
            .last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(CredentialOutline {
            id,
            policy: resource.spec.policy.clone(),
        })
    }

    async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
        let current = self.current();
        let mut cache = self.cache.lock().await;
        // Lost access, deletion, re-seal or TTL: the old plaintext goes before anything else.
        self.drop_if_stale(&mut cache, current.as_deref());
        let resource = current.ok_or_else(|| self.missing())?;
        self.authorize(&resource)?;
        if let Some(c) = cache.as_ref() {
            if Arc::ptr_eq(&c.resource, &resource) {
                self.metrics.cache_hits.inc();
                return Ok(c.credential.clone());
            }
            // Not stale, yet another version: a policy or access edit. A new credential
            // object (so pools and limits follow), the same secret, no KMS call.
            if let Some(reissued) = c.credential.reissue(&resource) {
                self.metrics.cache_hits.inc();
                let credential = Arc::new(reissued);
                let decrypted_at = c.decrypted_at;
                // Unlock the old range before locking the new one: mlock does not count, and
                // both may share a page.
                *cache = None;
                *cache = Some(Cached::new(resource, credential.clone(), decrypted_at));
                return Ok(credential);
            }
        }
        // Nothing cached (the old plaintext, if any, was dropped above): open afresh.
        *cache = None;
        let credential = Arc::new(self.open(&resource).await?);
        tracing::info!(
            credential = %credential.id(),
            fingerprint = %credential.sealed_fingerprint,
            "credential decrypted"
        );
        *cache = Some(Cached::new(resource, credential.clone(), Instant::now()));
        Ok(credential)
    }
}

#[cfg(test)]
mod tests;
