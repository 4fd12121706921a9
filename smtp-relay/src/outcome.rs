//! What happened to a message and why: the audit line's `outcome` and `reason` and the
//! metrics labels, as enums so that a label cannot be misspelt in one place.

use crate::policy::Rule;

/// What happened to one message (or attempted message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Relayed,
    PolicyDenied,
    UpstreamRejected,
    TemporaryFailure,
    InvalidMessage,
    Aborted,
}

impl Outcome {
    /// Every outcome, for zero-initialised counters.
    pub const ALL: [Outcome; 6] = [
        Outcome::Relayed,
        Outcome::PolicyDenied,
        Outcome::UpstreamRejected,
        Outcome::TemporaryFailure,
        Outcome::InvalidMessage,
        Outcome::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Relayed => "relayed",
            Outcome::PolicyDenied => "policy_denied",
            Outcome::UpstreamRejected => "upstream_rejected",
            Outcome::TemporaryFailure => "temporary_failure",
            Outcome::InvalidMessage => "invalid_message",
            Outcome::Aborted => "aborted",
        }
    }
}

/// Why a message was not relayed, or why its path failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A policy rule refused it.
    Policy(Rule),
    /// The credential source failed; the label is the core error's metric label.
    Credential(&'static str),
    CredentialTimeout,
    /// The relay's upstream settings are unusable (the label of [`crate::Error`]).
    UpstreamConfig(&'static str),
    /// No OAuth access token could be had: the OAuth error code or the failure's class
    /// (`token_invalid_grant`, `token_timeout`), from `TokenError::code_label`.
    UpstreamToken(&'static str),
    UpstreamUnavailable,
    UpstreamTls,
    UpstreamAuth,
    UpstreamTimeout,
    /// Upstream broke the protocol (injection before TLS, 354 after the data, garbage).
    UpstreamProtocol,
    UpstreamPermanent,
    UpstreamTransient,
    Nul,
    ClientClosed,
    DataTimeout,
    /// The relay-wide message memory budget was exhausted.
    MemoryBudget,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Policy(rule) => rule.as_str(),
            Reason::Credential(label)
            | Reason::UpstreamConfig(label)
            | Reason::UpstreamToken(label) => label,
            Reason::CredentialTimeout => "credential_timeout",
            Reason::UpstreamUnavailable => "upstream_unavailable",
            Reason::UpstreamTls => "upstream_tls",
            Reason::UpstreamAuth => "upstream_auth",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::UpstreamProtocol => "upstream_protocol",
            Reason::UpstreamPermanent => "upstream_permanent",
            Reason::UpstreamTransient => "upstream_transient",
            Reason::Nul => "nul",
            Reason::ClientClosed => "client_closed",
            Reason::DataTimeout => "data_timeout",
            Reason::MemoryBudget => "memory_budget",
        }
    }
}

/// How an application's AUTH in account-set mode ended (metrics only: the application hears
/// the same 535 for every refusal).
pub use mailcred_core::local_login::AccountLogin as AccountAuth;
