//! The `MailCredential` custom resource (`mailcred.io/v1alpha1`).
//!
//! The spec holds only what may be public inside the namespace: endpoints, the username,
//! ciphertext and policy. The password exists only inside [`SealedSecret`], encrypted.

mod oauth;
mod policy;
mod request;
mod sealed;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use oauth::{
    ClientAuthMethod, GOOGLE_MAIL_SCOPE, GOOGLE_TOKEN_ENDPOINT, MICROSOFT_APP_SCOPE,
    OAuthGrantKind, OAuthProvider, OAuthSpec,
};
pub use policy::{ImapAccess, ImapPolicy, Policy, RateLimits, SmtpPolicy};
pub use request::{SealRequest, SecretState};
pub use sealed::{DataKeyWrapping, KmsKeyRef, KmsProviderKind, SealedSecret};

/// API group of every mailcred resource.
pub const GROUP: &str = "mailcred.io";
/// Served (and stored) version of [`MailCredential`].
pub const VERSION: &str = "v1alpha1";

/// A third-party mail account that applications may use without ever holding its password.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mailcred.io",
    version = "v1alpha1",
    kind = "MailCredential",
    plural = "mailcredentials",
    namespaced,
    shortname = "mcred",
    category = "mailcred",
    status = "MailCredentialStatus",
    doc = "A mail account (SMTP and/or IMAP) whose password is sealed with a KMS key; the mailcred sidecar uses it on behalf of applications, which never see the password.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.secret"}"#,
    printcolumn = r#"{"name":"SMTP","type":"string","jsonPath":".spec.smtp.host"}"#,
    printcolumn = r#"{"name":"IMAP","type":"string","jsonPath":".spec.imap.host"}"#,
    printcolumn = r#"{"name":"Username","type":"string","priority":1,"jsonPath":".spec.username"}"#,
    printcolumn = r#"{"name":"Key","type":"string","priority":1,"jsonPath":".status.kmsKeyId"}"#,
    printcolumn = r#"{"name":"Sealed","type":"date","priority":1,"jsonPath":".status.sealedAt"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","priority":1,"jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("has(self.smtp) || has(self.imap)").message("at least one of spec.smtp or spec.imap must be set"))]
#[serde(rename_all = "camelCase")]
pub struct MailCredentialSpec {
    /// Upstream SMTP submission server the sidecar relays to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<UpstreamEndpoint>,
    /// Upstream IMAP server the sidecar proxies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap: Option<UpstreamEndpoint>,
    /// Account name used to authenticate upstream. Bound into the sealed secret: changing it
    /// requires re-sealing.
    #[schemars(length(min = 1, max = 320))]
    pub username: String,
    /// Authenticate upstream with OAuth 2.0 access tokens instead of a password. Bound into
    /// the sealed secret (envelope version 2), which then holds the grant's secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthSpec>,
    /// The password (or OAuth grant secret), envelope-encrypted (see docs/envelope.md). Absent while a seal request
    /// waits for the mailbox owner (`spec.sealRequest`, docs/link-sealing.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_secret: Option<SealedSecret>,
    /// A one-time link for the mailbox owner to seal the password in a browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_request: Option<SealRequest>,
    /// What the sidecar lets applications do with this account.
    #[serde(default)]
    pub policy: Policy,
    /// Who may use this credential.
    pub access: Access,
    /// End of the credential's lifetime (a registered account for one webmail session, say):
    /// from this instant the sidecar refuses it and the operator deletes the resource. Not bound
    /// into the sealed secret: shortening a lifetime needs no re-seal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

/// One upstream mail server. Host, port, TLS mode, CA and the insecure flag are bound into the
/// sealed secret, so that whoever can edit the resource cannot redirect the password elsewhere.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.tls != 'none' || (has(self.insecure) && self.insecure)").message("tls: none (plaintext upstream) requires insecure: true and an insecureReason"))]
#[x_kube(validation = Rule::new("!has(self.insecure) || !self.insecure || (has(self.insecureReason) && size(self.insecureReason) > 0)").message("insecure: true requires a non-empty insecureReason"))]
#[serde(rename_all = "camelCase")]
pub struct UpstreamEndpoint {
    /// DNS name or IP address; the TLS certificate must match it.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// `implicit` (TLS from the first byte, e.g. 465/993), `starttls` (e.g. 587/143), or `none`
    /// (plaintext; only with `insecure: true`).
    pub tls: TlsMode,
    /// PEM CA bundle to trust instead of the system roots (private relays, tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_pem: Option<String>,
    /// Allows `tls: none`. For tests only; reported in status.
    #[serde(default)]
    pub insecure: bool,
    /// Why plaintext is acceptable here; required with `insecure: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub insecure_reason: Option<String>,
}

/// How the sidecar secures the upstream connection.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Implicit,
    Starttls,
    None,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Implicit => "implicit",
            TlsMode::Starttls => "starttls",
            TlsMode::None => "none",
        }
    }
}

/// Which workloads may use the credential.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    /// ServiceAccount names in the credential's namespace whose pods may use it.
    #[schemars(length(min = 1, max = 64))]
    pub service_accounts: Vec<String>,
}

/// Observed state, written by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MailCredentialStatus {
    /// Ready, Sealed, AccessConfigured, ... (Kubernetes condition conventions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `sha256:` of the sealed secret as stored: changes exactly when the secret is re-sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_secret_fingerprint: Option<String>,
    /// Sealed, Pending (a seal request waits for the owner), Expired (its link expired unused)
    /// or Invalid: the `Secret` column of `kubectl get mcred`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretState>,
    /// Endpoints that run without TLS because of `insecure: true` (shown so nobody misses it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insecure_endpoints: Vec<String>,
    /// When the operator first saw the current sealed secret (its fingerprint): the seal's age
    /// is measured from here (`mailcred_credential_seal_age_seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_at: Option<Time>,
    /// The KMS key (`sealedSecret.kms.keyId`) the current secret is sealed with: the `Key`
    /// column, and what a retired-key check compares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

impl MailCredentialSpec {
    /// The endpoints that exist, labelled by protocol, in the canonical order (smtp, imap).
    pub fn endpoints(&self) -> impl Iterator<Item = (EndpointKind, &UpstreamEndpoint)> {
        self.smtp
            .iter()
            .map(|e| (EndpointKind::Smtp, e))
            .chain(self.imap.iter().map(|e| (EndpointKind::Imap, e)))
    }
}

/// Which protocol an upstream endpoint speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    Smtp,
    Imap,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Smtp => "smtp",
            EndpointKind::Imap => "imap",
        }
    }
}

/// The CustomResourceDefinition as written to `crds/mailcredential.yaml` by `crdgen`.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    use kube::CustomResourceExt;
    let yaml = serde_saphyr::to_string(&MailCredential::crd())?;
    Ok(format!(
        "# Generated by `cargo run -p mailcred-core --bin crdgen`; do not edit.\n---\n{yaml}"
    ))
}
