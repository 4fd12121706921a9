//! The credential source of the sidecar: the latest MailCredential (from a file or the
//! Kubernetes API, published on a watch channel), decrypted on first use, the plaintext kept
//! for at most the TTL, re-decrypted when the sealed secret changes.
//!
//! Sessions hold the `Arc<UsableCredential>` they started with; the cache only hands out new
//! ones. When the cache drops its `Arc` (TTL, rotation) and the last session ends, the
//! password is zeroized (MailPassword drops its SecretString).

pub mod file;
pub mod kube;
mod mlock;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mailcred_core::crd::MailCredential;
use mailcred_core::credential::{CredentialOutline, CredentialSource, UsableCredential};
use mailcred_core::kms::KmsProvider;
use mailcred_core::{CredentialBinding, Error, KmsError, envelope};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::{Mutex, watch};

/// The latest version of the resource, as the file or API watcher last saw it.
pub type ResourceFeed = watch::Receiver<Option<Arc<MailCredential>>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Metrics of the credential cache and KMS.
#[derive(Clone, Debug, Default)]
pub struct SourceMetrics {
    pub kms_decrypts: Family<ResultLabel, Counter>,
    pub cache_hits: Counter,
    pub cache_expiries: Counter,
}

impl SourceMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("mailcred");
        r.register(
            "kms_decrypts",
            "Sealed-secret decryptions by result (ok or error label)",
            m.kms_decrypts.clone(),
        );
        r.register(
            "credential_cache_hits",
            "Credential requests answered from the in-memory cache",
            m.cache_hits.clone(),
        );
        r.register(
            "credential_cache_expiries",
            "Decrypted passwords dropped because their TTL ran out",
            m.cache_expiries.clone(),
        );
        m
    }
}

struct Cached {
    /// The pages of `credential`'s password stay out of swap while cached (dropped first).
    _locked: mlock::LockedRange,
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
        let locked = mlock::LockedRange::lock(credential.password.expose().as_bytes());
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
            kms_timeout: Duration::from_secs(20),
            service_account,
            cache: Mutex::new(None),
            last_seen: std::sync::Mutex::new(None),
            metrics,
        }
    }

    /// Whether a resource has been loaded (readiness).
    pub fn loaded(&self) -> bool {
        self.feed.borrow().is_some()
    }

    /// Drops the plaintext once the TTL has passed, the resource was deleted, or its secret
    /// was re-sealed (called periodically by the runtime, so an unused password does not
    /// outlive any of these waiting for the next request).
    pub async fn expire(&self) {
        let current = self.current();
        let mut cache = self.cache.lock().await;
        let Some(cached) = cache.as_ref() else {
            return;
        };
        let why = if cached.decrypted_at.elapsed() >= self.ttl {
            "its TTL passed"
        } else if current.is_none() {
            "the MailCredential was deleted"
        } else if current
            .as_ref()
            .is_some_and(|r| !same_secret(&cached.resource, r))
        {
            "the MailCredential was re-sealed"
        } else {
            return;
        };
        *cache = None;
        self.metrics.cache_expiries.inc();
        tracing::debug!("decrypted credential dropped: {why}");
    }

    /// The resource now in the feed, remembering its id for [`Error::Deleted`].
    fn current(&self) -> Option<Arc<MailCredential>> {
        let resource = self.feed.borrow().clone();
        if let Some(r) = &resource {
            let id = format!(
                "{}/{}",
                r.metadata.namespace.as_deref().unwrap_or_default(),
                r.metadata.name.as_deref().unwrap_or_default()
            );
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

    async fn decrypt(&self, resource: &MailCredential) -> Result<UsableCredential, Error> {
        let binding = CredentialBinding::for_resource(resource)?;
        if let Some(sa) = &self.service_account
            && !resource
                .spec
                .access
                .service_accounts
                .iter()
                .any(|a| a == sa)
        {
            return Err(Error::InvalidSpec(format!(
                "ServiceAccount {sa} is not in spec.access.serviceAccounts of this MailCredential"
            )));
        }
        let sealed = &resource.spec.sealed_secret;
        let opened = tokio::time::timeout(
            self.kms_timeout,
            envelope::open(self.kms.as_ref(), &binding, sealed),
        )
        .await
        .map_err(|_| {
            Error::Kms(KmsError::Timeout {
                key_id: sealed.kms.key_id.clone(),
                seconds: self.kms_timeout.as_secs(),
            })
        });
        let password = match opened.and_then(|r| r) {
            Ok(p) => {
                self.metrics
                    .kms_decrypts
                    .get_or_create(&ResultLabel { result: "ok" })
                    .inc();
                p
            }
            Err(e) => {
                self.metrics
                    .kms_decrypts
                    .get_or_create(&ResultLabel {
                        result: e.metric_label(),
                    })
                    .inc();
                return Err(e);
            }
        };
        Ok(usable(resource, &binding, password))
    }
}

fn usable(
    resource: &MailCredential,
    binding: &CredentialBinding,
    password: mailcred_core::MailPassword,
) -> UsableCredential {
    UsableCredential {
        namespace: binding.context.namespace.clone(),
        name: binding.context.name.clone(),
        username: resource.spec.username.clone(),
        smtp: resource.spec.smtp.clone(),
        imap: resource.spec.imap.clone(),
        policy: resource.spec.policy.clone(),
        sealed_fingerprint: envelope::fingerprint(&resource.spec.sealed_secret),
        password,
    }
}

/// True when only the policy or access list differs: the same password still applies
/// (username and endpoints are bound into the ciphertext, so they cannot change alone).
fn same_secret(a: &MailCredential, b: &MailCredential) -> bool {
    a.spec.sealed_secret == b.spec.sealed_secret
        && a.spec.username == b.spec.username
        && a.spec.smtp == b.spec.smtp
        && a.spec.imap == b.spec.imap
        && a.metadata.name == b.metadata.name
        && a.metadata.namespace == b.metadata.namespace
}

#[async_trait]
impl CredentialSource for CachedCredentialSource {
    fn outline(&self) -> Option<CredentialOutline> {
        let resource = self.current()?;
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
        let resource = self.current().ok_or_else(|| self.missing())?;
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && c.decrypted_at.elapsed() < self.ttl
        {
            if Arc::ptr_eq(&c.resource, &resource) {
                self.metrics.cache_hits.inc();
                return Ok(c.credential.clone());
            }
            if same_secret(&c.resource, &resource) {
                // Policy edit: new credential object (so pools and limits follow), same secret.
                self.metrics.cache_hits.inc();
                let binding = CredentialBinding::for_resource(&resource)?;
                let credential = Arc::new(usable(
                    &resource,
                    &binding,
                    c.credential.password.duplicate(),
                ));
                let decrypted_at = c.decrypted_at;
                // Unlock the old range before locking the new one: mlock does not count, and
                // both may share a page.
                *cache = None;
                *cache = Some(Cached::new(resource, credential.clone(), decrypted_at));
                return Ok(credential);
            }
        }
        // Drop the old plaintext before making the new one.
        *cache = None;
        let credential = Arc::new(self.decrypt(&resource).await?);
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
