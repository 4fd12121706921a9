//! Where MailCredentials are read and written: the Kubernetes API ([`KubeStore`]) or a
//! directory of YAML files ([`FileStore`], for the local e2e suite and the demo). Both write
//! with optimistic concurrency: a write names the version it read and fails with
//! [`StoreError::Conflict`] if anything changed since, so two submits of one link cannot
//! both write.

mod file;
mod kube;

use async_trait::async_trait;
use mailcred_core::crd::MailCredential;

pub use self::file::FileStore;
pub use self::kube::KubeStore;

/// A resource and the version it was read at (resourceVersion, or the file's SHA-256).
#[derive(Debug, Clone)]
pub struct Stored {
    pub resource: MailCredential,
    pub version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the MailCredential changed since it was read")]
    Conflict,
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Store: Send + Sync {
    /// The MailCredential `namespace/name`, `None` when there is none.
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Stored>, StoreError>;

    /// Writes `resource` (its spec) if the stored one is still at `version`.
    async fn replace(&self, resource: &MailCredential, version: &str) -> Result<(), StoreError>;
}
