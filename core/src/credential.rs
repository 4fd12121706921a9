//! A decrypted credential as the sidecar's protocol front-ends consume it, [`open`] that makes
//! one from a resource, and the trait through which the front-ends ask for it (the sidecar
//! runtime implements it with a bounded cache).

use std::sync::Arc;

use async_trait::async_trait;

use crate::crd::{MailCredential, Policy, UpstreamEndpoint};
use crate::kms::KmsProvider;
use crate::{CredentialBinding, Error, UpstreamAuth, envelope};

/// Opens the sealed secret of `resource` as it is now (binding from its namespace, name,
/// username and endpoints; data key unwrapped through `kms`) and returns the finished
/// credential. The one path from a MailCredential to a usable password: the sidecar and
/// `kubectl mailcred verify` both take it. Not bounded in time: callers that serve traffic
/// put their own timeout around it.
pub async fn open(
    resource: &MailCredential,
    kms: &dyn KmsProvider,
) -> Result<UsableCredential, Error> {
    open_with_tokens(resource, kms, None).await
}

/// [`open`] for callers that can fetch OAuth tokens (the sidecar passes mailcred-oauth's
/// factory). Placeholder with `oauthcore`'s signature until its sealed grant payload lands:
/// an OAuth credential is refused here; the lead's merge takes oauthcore's body.
pub async fn open_with_tokens(
    resource: &MailCredential,
    kms: &dyn KmsProvider,
    tokens: Option<&dyn crate::upstream_auth::TokenSourceFactory>,
) -> Result<UsableCredential, Error> {
    if resource.spec.oauth.is_some() {
        let why = match tokens {
            None => "this program was started without an OAuth token client",
            Some(_) => "the sealed OAuth grant payload is not implemented in this build yet",
        };
        return Err(Error::Token(crate::TokenError::Config(format!(
            "this MailCredential uses spec.oauth, but {why}"
        ))));
    }
    let binding = CredentialBinding::for_resource(resource)?;
    let password = envelope::open(kms, &binding, &resource.spec.sealed_secret).await?;
    Ok(UsableCredential::assemble(
        resource,
        &binding,
        UpstreamAuth::Password(password),
    ))
}

/// Everything needed to serve one application session against the upstream servers.
/// `Debug` is safe: the password and tokens redact themselves.
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
    /// The sealed password, or the OAuth token source built from the sealed grant.
    pub auth: UpstreamAuth,
}

impl UsableCredential {
    /// `namespace/name`, as used in audit lines and metrics labels.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub(crate) fn assemble(
        resource: &MailCredential,
        binding: &CredentialBinding,
        auth: UpstreamAuth,
    ) -> Self {
        Self {
            namespace: binding.context.namespace.clone(),
            name: binding.context.name.clone(),
            username: resource.spec.username.clone(),
            smtp: resource.spec.smtp.clone(),
            imap: resource.spec.imap.clone(),
            policy: resource.spec.policy.clone(),
            sealed_fingerprint: envelope::fingerprint(&resource.spec.sealed_secret),
            auth,
        }
    }

    /// True when `resource` has the sealed secret, username, endpoints, namespace and name
    /// this credential was opened from: then its password still applies, whatever else
    /// (policy, access) changed. Everything compared here is bound into the ciphertext.
    pub fn opened_from(&self, resource: &MailCredential) -> bool {
        resource.metadata.namespace.as_deref() == Some(self.namespace.as_str())
            && resource.metadata.name.as_deref() == Some(self.name.as_str())
            && resource.spec.username == self.username
            && resource.spec.smtp == self.smtp
            && resource.spec.imap == self.imap
            && envelope::fingerprint(&resource.spec.sealed_secret) == self.sealed_fingerprint
    }

    /// The same password under a newer version of its resource that only changed what is not
    /// bound (a policy or access edit): no KMS call. `None` when the resource must be opened
    /// again ([`Self::opened_from`] is false).
    pub fn reissue(&self, resource: &MailCredential) -> Option<Self> {
        if !self.opened_from(resource) {
            return None;
        }
        let binding = CredentialBinding::for_resource(resource).ok()?;
        Some(Self::assemble(resource, &binding, self.auth.duplicate()))
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
