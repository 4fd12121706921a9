//! Shared core of mailcred: the `MailCredential` resource, envelope encryption (format v1 passwords, v2 OAuth grants)
//! and the KMS providers. The operator, the sidecar and the kubectl plugin all build on it;
//! none of them depends on another.

#[cfg(feature = "serve")]
pub mod accept;
pub mod accounts;
mod aead;
pub mod binding;
pub mod crd;
pub mod credential;
pub mod envelope;
mod error;
pub mod grant;
pub mod kms;
pub mod link_token;
pub mod local_login;
pub mod login_check;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod metrics_text;
pub mod names;
pub mod oauth_rules;
pub mod policy;
pub mod secret;
pub mod sidecar_contract;
#[cfg(any(test, feature = "test-util"))]
pub mod testkit;
#[cfg(feature = "tls")]
pub mod tls;
pub mod upstream_auth;

pub use binding::{CredentialBinding, EncryptionContext};
/// The commit the binaries were built from: `MAILCRED_GIT_COMMIT` at build time (the image
/// build and the release workflow set it), `unknown` for a plain `cargo build`. The value of
/// every `mailcred_build_info{commit}`.
pub const GIT_COMMIT: &str = match option_env!("MAILCRED_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

pub use error::{Error, KmsError, METRIC_LABELS as ERROR_METRIC_LABELS, TokenError};
pub use secret::{DataKey, MailPassword};
pub use upstream_auth::{
    AccessToken, AccessTokenSource, GrantSecret, SaslMechanism, TokenSourceFactory, UpstreamAuth,
};
