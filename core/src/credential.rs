//! A decrypted credential as the sidecar's protocol front-ends consume it, and the trait
//! through which they ask for it (the sidecar runtime implements it with a bounded cache).

use std::sync::Arc;

use async_trait::async_trait;

use crate::crd::{MailCredential, Policy, UpstreamEndpoint};
use crate::{Error, MailPassword};

/// Everything needed to serve one application session against the upstream servers.
/// `Debug` is safe: the password redacts itself.
#[derive(Debug)]
pub struct UsableCredential {
    pub namespace: String,
    pub name: String,
    pub username: String,
    pub smtp: Option<UpstreamEndpoint>,
    pub imap: Option<UpstreamEndpoint>,
    pub policy: Policy,
    /// Fingerprint of the sealed secret this password came from (changes on re-seal).
    pub sealed_fingerprint: String,
    pub password: MailPassword,
}

impl UsableCredential {
    /// `namespace/name`, as used in audit lines and metrics labels.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Supplies the current credential. Implementations decrypt on first use, cache for a bounded
/// time and pick up re-sealed secrets; callers hold the `Arc` for one session at most, so an
/// open session finishes on the secret it started with.
#[async_trait]
pub trait CredentialSource: Send + Sync {
    async fn credential(&self) -> Result<Arc<UsableCredential>, Error>;

    /// What is known without decrypting: lets a front-end answer EHLO or write an audit line
    /// without waiting for KMS. `None` when nothing is loaded (or the source cannot tell).
    fn outline(&self) -> Option<CredentialOutline> {
        None
    }
}

/// The non-secret part of the loaded MailCredential.
#[derive(Debug, Clone)]
pub struct CredentialOutline {
    /// `namespace/name`, as [`UsableCredential::id`].
    pub id: String,
    pub policy: Policy,
}

/// Parses one MailCredential from YAML (a `kubectl mailcred seal` output or a manifest).
pub fn from_yaml(text: &str) -> Result<MailCredential, Error> {
    let types: kube::core::TypeMeta = serde_saphyr::from_str(text)
        .map_err(|e| Error::InvalidSpec(format!("not a Kubernetes manifest: {e}")))?;
    if types.api_version != "mailcred.io/v1alpha1" || types.kind != "MailCredential" {
        return Err(Error::InvalidSpec(format!(
            "expected apiVersion mailcred.io/v1alpha1, kind MailCredential; found {} {}",
            types.api_version, types.kind
        )));
    }
    serde_saphyr::from_str(text)
        .map_err(|e| Error::InvalidSpec(format!("not a valid MailCredential: {e}")))
}
