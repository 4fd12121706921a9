//! The mailcred operator: a controller that validates MailCredentials, reports their status
//! and keeps one Role + RoleBinding per credential, and a mutating admission webhook that
//! injects the mailcred sidecar into annotated pods. It never decrypts: it reads ciphertext
//! only to check its shape and fingerprint it.

pub mod access;
pub mod account_roles;
pub mod cache;
pub mod config;
pub mod controller;
pub mod health;
pub mod leader;
pub mod lifetime;
pub mod metrics;
pub mod seal_age;
pub mod seal_request;
pub mod status;
pub mod telemetry;
pub mod validation;
pub mod webhook;

/// Field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "mailcred-operator";

/// The one error type of the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed while {action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },

    #[error(
        "MailCredential has no {0}; the API server always sets it, so this object did not come from the API"
    )]
    MissingMetadata(&'static str),

    #[error("webhook TLS: {0}")]
    Tls(String),

    #[error("configuration: {0}")]
    Config(String),

    #[error("serializing {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("leader election on Lease {lease}: {detail}")]
    LeaderElection { lease: String, detail: String },

    #[error("{what} did not finish within {seconds} s")]
    Timeout { what: &'static str, seconds: u64 },

    #[error("{0}")]
    Io(String),
}

impl Error {
    /// Wraps a kube error with what the operator was doing.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }

    /// Stable, low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 409 => "kube_conflict",
                kube::Error::Api(status) if status.code == 403 => "kube_forbidden",
                kube::Error::Api(status) if status.code == 404 => "kube_not_found",
                kube::Error::Api(_) => "kube_api",
                _ => "kube_transport",
            },
            Error::MissingMetadata(_) => "missing_metadata",
            Error::Tls(_) => "tls",
            Error::Config(_) => "config",
            Error::Serialize { .. } => "serialize",
            Error::LeaderElection { .. } => "leader_election",
            Error::Timeout { .. } => "timeout",
            Error::Io(_) => "io",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
