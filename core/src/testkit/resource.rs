//! `TestCredential`: a MailCredential built in one expression, with a placeholder sealed
//! secret (for code that never opens it) or sealed for real with any sealer (the local
//! provider in most tests).

use std::path::Path;

use crate::crd::{
    Access, DataKeyWrapping, ImapPolicy, KmsKeyRef, KmsProviderKind, MailCredential,
    MailCredentialSpec, Policy, SealedSecret, SmtpPolicy, TlsMode, UpstreamEndpoint,
};
use crate::credential::UsableCredential;
use crate::kms::DataKeySealer;
use crate::{CredentialBinding, MailPassword, envelope};

/// A verified-TLS endpoint with the system roots.
pub fn endpoint(host: &str, port: u16, tls: TlsMode) -> UpstreamEndpoint {
    UpstreamEndpoint {
        host: host.to_owned(),
        port,
        tls,
        ca_pem: None,
        insecure: false,
        insecure_reason: None,
    }
}

/// A sealed secret of the right shape that opens for nothing: local provider, an all-zero
/// key fingerprint, empty fields. For tests that never decrypt.
pub fn placeholder_sealed_secret() -> SealedSecret {
    SealedSecret {
        version: envelope::FORMAT_VERSION,
        kms: KmsKeyRef {
            provider: KmsProviderKind::Local,
            key_id: "sha256:00000000000000000000000000000000".into(),
            wrapping: DataKeyWrapping::SymmetricDefault,
            region: None,
            endpoint: None,
        },
        encrypted_data_key: String::new(),
        nonce: String::new(),
        ciphertext: String::new(),
    }
}

/// Builder of a MailCredential. Defaults: username `app@example.test`, SMTP
/// `smtp.example.test:587` STARTTLS, no IMAP, default policy, access for ServiceAccount `app`,
/// a placeholder sealed secret.
#[derive(Debug, Clone)]
pub struct TestCredential {
    namespace: String,
    name: String,
    spec: MailCredentialSpec,
    labels: std::collections::BTreeMap<String, String>,
}

impl TestCredential {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            spec: MailCredentialSpec {
                smtp: Some(endpoint("smtp.example.test", 587, TlsMode::Starttls)),
                imap: None,
                username: "app@example.test".into(),
                oauth: None,
                sealed_secret: Some(placeholder_sealed_secret()),
                seal_request: None,
                policy: Policy::default(),
                access: Access {
                    service_accounts: vec!["app".into()],
                },
                expires_at: None,
            },
            labels: Default::default(),
        }
    }

    /// Puts the credential into account set `set` (its label).
    pub fn account_set(mut self, set: &str) -> Self {
        self.labels.insert(
            crate::accounts::ACCOUNT_SET_LABEL.to_owned(),
            set.to_owned(),
        );
        self
    }

    /// Ends the credential's lifetime at `at`.
    pub fn expires_at(mut self, at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Self {
        self.spec.expires_at = Some(at);
        self
    }

    /// The upstream SMTP server (system roots; see [`Self::smtp_endpoint`] for a CA).
    pub fn smtp(self, host: &str, port: u16, tls: TlsMode) -> Self {
        self.smtp_endpoint(endpoint(host, port, tls))
    }

    pub fn smtp_endpoint(mut self, endpoint: UpstreamEndpoint) -> Self {
        self.spec.smtp = Some(endpoint);
        self
    }

    pub fn no_smtp(mut self) -> Self {
        self.spec.smtp = None;
        self
    }

    /// The upstream IMAP server (system roots; see [`Self::imap_endpoint`] for a CA).
    pub fn imap(self, host: &str, port: u16, tls: TlsMode) -> Self {
        self.imap_endpoint(endpoint(host, port, tls))
    }

    pub fn imap_endpoint(mut self, endpoint: UpstreamEndpoint) -> Self {
        self.spec.imap = Some(endpoint);
        self
    }

    /// Trust `pem` instead of the system roots on every endpoint set so far.
    pub fn ca_pem(mut self, pem: &str) -> Self {
        for e in [&mut self.spec.smtp, &mut self.spec.imap]
            .into_iter()
            .flatten()
        {
            e.ca_pem = Some(pem.to_owned());
        }
        self
    }

    pub fn username(mut self, username: &str) -> Self {
        self.spec.username = username.to_owned();
        self
    }

    pub fn policy(mut self, policy: Policy) -> Self {
        self.spec.policy = policy;
        self
    }

    pub fn smtp_policy(mut self, smtp: SmtpPolicy) -> Self {
        self.spec.policy.smtp = smtp;
        self
    }

    pub fn imap_policy(mut self, imap: ImapPolicy) -> Self {
        self.spec.policy.imap = imap;
        self
    }

    pub fn service_accounts(mut self, names: &[&str]) -> Self {
        self.spec.access.service_accounts = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Authenticate upstream with OAuth (envelope version 2; seal with [`Self::sealed_grant`]).
    pub fn oauth(mut self, oauth: crate::crd::OAuthSpec) -> Self {
        self.spec.oauth = Some(oauth);
        self
    }

    /// The resource with the OAuth grant `secret` sealed for it by `sealer`.
    pub async fn sealed_grant(
        mut self,
        sealer: &dyn DataKeySealer,
        secret: &crate::GrantSecret,
    ) -> MailCredential {
        let oauth = self
            .spec
            .oauth
            .clone()
            .unwrap_or_else(|| panic!("sealed_grant needs .oauth(..) first"));
        self.spec.sealed_secret = Some(
            envelope::seal_grant(sealer, &self.binding(), &oauth, secret)
                .await
                .unwrap_or_else(|e| panic!("sealing the test grant: {e}")),
        );
        self.build()
    }

    /// The placeholder's (or a given) sealed secret, as stored.
    pub fn sealed_secret(mut self, sealed: SealedSecret) -> Self {
        self.spec.sealed_secret = Some(sealed);
        self
    }

    /// The spec as built so far.
    pub fn spec(&self) -> &MailCredentialSpec {
        &self.spec
    }

    pub fn into_spec(self) -> MailCredentialSpec {
        self.spec
    }

    /// What a secret sealed for this credential is bound to.
    pub fn binding(&self) -> CredentialBinding {
        CredentialBinding::new(&self.namespace, &self.name, &self.spec)
            .unwrap_or_else(|e| panic!("test credential cannot be bound: {e}"))
    }

    /// The resource, with the sealed secret as set (a placeholder unless [`Self::sealed`]).
    pub fn build(self) -> MailCredential {
        let mut resource = MailCredential::new(&self.name, self.spec);
        resource.metadata.namespace = Some(self.namespace);
        if !self.labels.is_empty() {
            resource.metadata.labels = Some(self.labels);
        }
        resource
    }

    /// The resource with `password` sealed for it by `sealer` (a `LocalKms` in most tests).
    pub async fn sealed(mut self, sealer: &dyn DataKeySealer, password: &str) -> MailCredential {
        let password = test_password(password);
        self.spec.sealed_secret = Some(
            envelope::seal(sealer, &self.binding(), &password)
                .await
                .unwrap_or_else(|e| panic!("sealing the test credential: {e}")),
        );
        self.build()
    }

    /// A decrypted credential for this resource without sealing (front-end tests).
    pub fn usable(self, password: &str) -> UsableCredential {
        UsableCredential::test(&self.build(), password)
    }
}

impl UsableCredential {
    /// The credential `resource` would open to, with `password`, built without KMS. For
    /// tests of code that consumes credentials (front-ends, caches).
    pub fn test(resource: &MailCredential, password: &str) -> Self {
        let binding = CredentialBinding::for_resource(resource)
            .unwrap_or_else(|e| panic!("test credential cannot be bound: {e}"));
        Self::assemble(
            resource,
            &binding,
            crate::UpstreamAuth::Password(test_password(password)),
        )
    }
}

fn test_password(password: &str) -> MailPassword {
    MailPassword::new(password.to_owned())
        .unwrap_or_else(|e| panic!("not a usable test password: {e}"))
}

/// `resource` as the manifest the sidecar's `--credential-file` and `kubectl mailcred verify
/// -f` read: apiVersion, kind, name, namespace and spec.
pub fn manifest_json(resource: &MailCredential) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "mailcred.io/v1alpha1",
        "kind": "MailCredential",
        "metadata": {
            "name": resource.metadata.name,
            "namespace": resource.metadata.namespace,
        },
        "spec": resource.spec,
    })
}

/// Writes [`manifest_json`] to `path` (JSON, which is YAML), replacing it in one rename so
/// that a watcher never reads half a file.
pub fn write_manifest(resource: &MailCredential, path: &Path) -> std::io::Result<()> {
    let text =
        serde_json::to_string_pretty(&manifest_json(resource)).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
