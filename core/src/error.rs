//! The one error type of the core crate. Every message says what is wrong and what to do;
//! none can contain plaintext, because no variant is ever built from a password or data key.

/// Envelope, binding and password errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "sealed secret format version {found} is not supported (this build reads versions 1 to {supported}); upgrade mailcred or re-seal with `kubectl mailcred seal`"
    )]
    UnsupportedVersion { found: u32, supported: u32 },

    #[error(
        "spec.sealedSecret.{field} is malformed: {reason}; re-seal with `kubectl mailcred seal`"
    )]
    Malformed { field: &'static str, reason: String },

    #[error(
        "the sealed secret does not open for this MailCredential: its namespace, name, username, an upstream endpoint (host, port, tls, caPem, insecure) or spec.oauth (token endpoint, client, grant, scopes, mechanism; or oauth added or removed) differs from what was sealed, or the ciphertext was altered; re-seal it with `kubectl mailcred seal` for the current spec"
    )]
    SealedSecretMismatch,

    #[error("invalid MailCredential: {0}")]
    InvalidSpec(String),

    #[error(
        "the MailCredential {id} holds no sealed secret yet: its seal request waits for the mailbox owner to open the link (or the link expired); nothing is sent with it until the owner seals the password, or seal it with `kubectl mailcred seal`"
    )]
    NotSealed { id: String },

    #[error(
        "the MailCredential has not been loaded yet; check that it exists and that the sidecar's ServiceAccount may get and watch it"
    )]
    NotLoaded,

    #[error("the MailCredential {id} was deleted; nothing is sent with it until it is re-created")]
    Deleted { id: String },

    #[error(
        "ServiceAccount {service_account} is not in spec.access.serviceAccounts of MailCredential {id}: this pod may not use it; add the ServiceAccount there if it should"
    )]
    AccessDenied { id: String, service_account: String },

    #[error("invalid password: {0}")]
    InvalidPassword(String),

    /// The secret half of an OAuth grant does not fit `spec.oauth` (message names the field).
    #[error("invalid OAuth grant secret: {0}")]
    InvalidGrantSecret(String),

    #[error(transparent)]
    Kms(#[from] KmsError),

    #[error(transparent)]
    Token(#[from] TokenError),

    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}

/// Every value [`Error::metric_label`] can return (KMS labels included): counters start with
/// each at 0. A test reads the match arms of this file, so a new label cannot be left out.
pub const METRIC_LABELS: &[&str] = &[
    "unsupported_version",
    "malformed",
    "sealed_secret_mismatch",
    "invalid_spec",
    "credential_not_loaded",
    "credential_deleted",
    "service_account_not_allowed",
    "invalid_password",
    "crypto",
    "kms_unreachable",
    "kms_timeout",
    "kms_throttled",
    "kms_access_denied",
    "kms_key_disabled",
    "kms_key_not_found",
    "kms_context_mismatch",
    "kms_wrong_key",
    "kms_provider_mismatch",
    "kms_seal_only",
    "kms_untrusted_endpoint",
    "kms_config",
    "kms_other",
    "not_sealed",
    "invalid_grant_secret",
    "token_unreachable",
    "token_timeout",
    "token_http_status",
    "token_refused",
    "token_malformed",
    "token_too_large",
    "token_config",
];

impl Error {
    /// Stable, low-cardinality label for metrics and audit lines.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::Malformed { .. } => "malformed",
            Error::SealedSecretMismatch => "sealed_secret_mismatch",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::NotSealed { .. } => "not_sealed",
            Error::NotLoaded => "credential_not_loaded",
            Error::Deleted { .. } => "credential_deleted",
            Error::AccessDenied { .. } => "service_account_not_allowed",
            Error::InvalidPassword(_) => "invalid_password",
            Error::InvalidGrantSecret(_) => "invalid_grant_secret",
            Error::Kms(e) => e.metric_label(),
            Error::Token(e) => e.metric_label(),
            Error::Crypto(_) => "crypto",
        }
    }

    /// True when retrying later may succeed without anyone changing the resource
    /// (the sidecar answers these with a temporary failure and retries).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kms(e) => e.is_transient(),
            Error::Token(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Failures to obtain an OAuth 2.0 access token. Messages name the endpoint and the OAuth
/// error code the server sent, never a token, secret or assertion.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the OAuth token endpoint {endpoint} could not be reached: {detail}; check the network path and spec.oauth"
    )]
    Unreachable { endpoint: String, detail: String },

    #[error("the OAuth token endpoint {endpoint} did not answer within {seconds} s")]
    Timeout { endpoint: String, seconds: u64 },

    #[error("the OAuth token endpoint {endpoint} answered HTTP {status}")]
    HttpStatus { endpoint: String, status: u16 },

    #[error("the OAuth token endpoint {endpoint} refused the grant: {code}; {hint}")]
    Refused {
        endpoint: String,
        /// The RFC 6749 §5.2 error code, reduced to its allowed characters and bounded.
        code: String,
        hint: &'static str,
    },

    #[error("the OAuth token endpoint {endpoint} sent a malformed reply: {reason}")]
    Malformed { endpoint: String, reason: String },

    #[error("the OAuth token endpoint {endpoint} sent a reply over {limit} bytes")]
    TooLarge { endpoint: String, limit: usize },

    #[error("OAuth configuration: {0}")]
    Config(String),
}

impl TokenError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            TokenError::Unreachable { .. } => "token_unreachable",
            TokenError::Timeout { .. } => "token_timeout",
            TokenError::HttpStatus { .. } => "token_http_status",
            TokenError::Refused { .. } => "token_refused",
            TokenError::Malformed { .. } => "token_malformed",
            TokenError::TooLarge { .. } => "token_too_large",
            TokenError::Config(_) => "token_config",
        }
    }

    /// For audit lines: the RFC 6749 §5.2 error code the endpoint refused with, when it is a
    /// standard one (`token_invalid_grant`), else [`Self::metric_label`]. Static, so it
    /// stays low-cardinality whatever the server sends.
    pub fn code_label(&self) -> &'static str {
        match self {
            TokenError::Refused { code, .. } => match code.as_str() {
                "invalid_request" => "token_invalid_request",
                "invalid_client" => "token_invalid_client",
                "invalid_grant" => "token_invalid_grant",
                "unauthorized_client" => "token_unauthorized_client",
                "unsupported_grant_type" => "token_unsupported_grant_type",
                "invalid_scope" => "token_invalid_scope",
                _ => self.metric_label(),
            },
            _ => self.metric_label(),
        }
    }

    /// Whether waiting may help without anyone changing the grant (`invalid_grant` and
    /// `invalid_client` do not heal by themselves).
    pub fn is_transient(&self) -> bool {
        match self {
            TokenError::Unreachable { .. }
            | TokenError::Timeout { .. }
            | TokenError::Malformed { .. }
            | TokenError::TooLarge { .. } => true,
            TokenError::HttpStatus { status, .. } => *status >= 500 || *status == 429,
            TokenError::Refused { .. } | TokenError::Config(_) => false,
        }
    }
}

/// Failures of a key-encryption provider.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error(
        "KMS could not be reached for key {key_id}: {detail}; check the network path to KMS, the region and the endpoint"
    )]
    Unreachable { key_id: String, detail: String },

    #[error(
        "KMS did not answer within {seconds} s for key {key_id}; it is retried on the next use"
    )]
    Timeout { key_id: String, seconds: u64 },

    #[error("KMS throttled requests for key {key_id}: {detail}; it is retried with backoff")]
    Throttled { key_id: String, detail: String },

    #[error(
        "KMS denied access to key {key_id}: {detail}; grant kms:Decrypt on this key to the pod's identity, conditioned on kms:EncryptionContext:mailcred.io/namespace (see README, IAM policy)"
    )]
    AccessDenied { key_id: String, detail: String },

    #[error(
        "KMS key {key_id} is disabled or pending deletion; enable it, or re-seal with another key"
    )]
    KeyDisabled { key_id: String },

    #[error(
        "KMS key {key_id} does not exist in this account and region; check spec.sealedSecret.kms.keyId and region"
    )]
    KeyNotFound { key_id: String },

    #[error(
        "KMS refused to unwrap the data key with key {key_id}: it was sealed for another namespace/name or key, or it was altered; re-seal it for this MailCredential"
    )]
    ContextMismatch { key_id: String },

    #[error(
        "the secret was sealed with local key {sealed}, but the key file given has fingerprint {available}; use the key file it was sealed with, or re-seal"
    )]
    WrongKey { sealed: String, available: String },

    #[error(
        "the secret was sealed with the {sealed} provider, but this process is configured for {configured}"
    )]
    ProviderMismatch {
        sealed: &'static str,
        configured: &'static str,
    },

    #[error("{what} can seal but not unwrap: unwrapping happens in KMS under the pod's identity")]
    SealOnly { what: &'static str },

    #[error(
        "spec.sealedSecret.kms.endpoint {endpoint} is not an endpoint this process trusts; add it to the trusted KMS endpoints (MAILCRED_TRUSTED_KMS_ENDPOINTS) or remove it from the spec"
    )]
    UntrustedEndpoint { endpoint: String },

    #[error("KMS configuration: {0}")]
    Config(String),

    #[error("KMS error for key {key_id}: {detail}")]
    Other { key_id: String, detail: String },
}

impl KmsError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            KmsError::Unreachable { .. } => "kms_unreachable",
            KmsError::Timeout { .. } => "kms_timeout",
            KmsError::Throttled { .. } => "kms_throttled",
            KmsError::AccessDenied { .. } => "kms_access_denied",
            KmsError::KeyDisabled { .. } => "kms_key_disabled",
            KmsError::KeyNotFound { .. } => "kms_key_not_found",
            KmsError::ContextMismatch { .. } => "kms_context_mismatch",
            KmsError::WrongKey { .. } => "kms_wrong_key",
            KmsError::ProviderMismatch { .. } => "kms_provider_mismatch",
            KmsError::SealOnly { .. } => "kms_seal_only",
            KmsError::UntrustedEndpoint { .. } => "kms_untrusted_endpoint",
            KmsError::Config(_) => "kms_config",
            KmsError::Other { .. } => "kms_other",
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KmsError::Unreachable { .. }
                | KmsError::Timeout { .. }
                | KmsError::Throttled { .. }
                | KmsError::Other { .. }
        )
    }
}

#[cfg(test)]
mod label_tests {
    /// The string literals of every `=> "label"` arm inside the two `metric_label` functions.
    fn labels_in_source() -> Vec<String> {
        let source = include_str!("error.rs");
        let mut labels = Vec::new();
        for body in source.split("pub fn metric_label(&self)").skip(1) {
            let body = body.split("\n    }\n").next().unwrap_or_default();
            for arm in body.split("=> \"").skip(1) {
                labels.push(arm.split('"').next().unwrap_or_default().to_string());
            }
        }
        labels
    }

    #[test]
    fn metric_labels_lists_every_label_of_every_arm() {
        let mut found = labels_in_source();
        found.sort();
        let mut listed: Vec<String> = super::METRIC_LABELS.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert!(found.len() > 20, "the parser found the arms: {found:?}");
        assert_eq!(found, listed);
    }
}
