//! The one error type of the IMAP proxy. No variant is built from a password or from the
//! application's login words, so messages are safe to log.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on the {side} connection: {source}")]
    Io {
        side: Side,
        #[source]
        source: std::io::Error,
    },

    #[error("the {side} connection closed")]
    Closed { side: Side },

    #[error("no data from the {side} within {timeout:?} while {during}")]
    Timeout {
        side: Side,
        timeout: Duration,
        during: &'static str,
    },

    #[error("cannot reach upstream IMAP server {endpoint}: {detail}")]
    UpstreamUnreachable { endpoint: String, detail: String },

    #[error("TLS with upstream IMAP server {endpoint} failed: {detail}")]
    UpstreamTls { endpoint: String, detail: String },

    #[error("upstream IMAP server {endpoint} rejected the login of {username}: {refusal}")]
    UpstreamAuth {
        endpoint: String,
        username: String,
        /// Only the class: upstream's text may echo the login line, password included.
        refusal: LoginRefusal,
    },

    #[error("upstream IMAP server broke the protocol: {0}")]
    UpstreamProtocol(String),

    #[error("credential unavailable: {0}")]
    Credential(#[from] mailcred_core::Error),

    #[error("IMAP proxy configuration: {0}")]
    Config(String),
}

/// Why upstream refused the login, from its response code (RFC 5530) and status alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    AuthenticationFailed,
    AuthorizationFailed,
    Expired,
    PrivacyRequired,
    ContactAdmin,
    Unavailable,
    Limit,
    /// `NO` without a code the proxy knows.
    Refused,
    /// `BAD`: upstream did not understand the login command.
    Bad,
    /// Upstream offers neither AUTHENTICATE PLAIN nor LOGIN.
    NoMechanism,
    /// Upstream does not offer the OAuth credential's mechanism (there is no fallback).
    NoOAuthMechanism(&'static str),
}

impl LoginRefusal {
    pub(crate) fn from_response(status: &str, code: Option<&str>) -> Self {
        if status == "BAD" {
            return LoginRefusal::Bad;
        }
        match code {
            Some("AUTHENTICATIONFAILED") => LoginRefusal::AuthenticationFailed,
            Some("AUTHORIZATIONFAILED") => LoginRefusal::AuthorizationFailed,
            Some("EXPIRED") => LoginRefusal::Expired,
            Some("PRIVACYREQUIRED") => LoginRefusal::PrivacyRequired,
            Some("CONTACTADMIN") => LoginRefusal::ContactAdmin,
            Some("UNAVAILABLE") => LoginRefusal::Unavailable,
            Some("LIMIT") => LoginRefusal::Limit,
            _ => LoginRefusal::Refused,
        }
    }
}

impl LoginRefusal {
    /// What upstream answered, as the log names it: the RFC 5530 response code, or the
    /// status when there was none (never upstream's text).
    pub fn reply_code(self) -> &'static str {
        match self {
            LoginRefusal::AuthenticationFailed => "NO [AUTHENTICATIONFAILED]",
            LoginRefusal::AuthorizationFailed => "NO [AUTHORIZATIONFAILED]",
            LoginRefusal::Expired => "NO [EXPIRED]",
            LoginRefusal::PrivacyRequired => "NO [PRIVACYREQUIRED]",
            LoginRefusal::ContactAdmin => "NO [CONTACTADMIN]",
            LoginRefusal::Unavailable => "NO [UNAVAILABLE]",
            LoginRefusal::Limit => "NO [LIMIT]",
            LoginRefusal::Refused => "NO",
            LoginRefusal::Bad => "BAD",
            LoginRefusal::NoMechanism => "LOGINDISABLED",
            LoginRefusal::NoOAuthMechanism(_) => "NO AUTH MECHANISM",
        }
    }
}

impl std::fmt::Display for LoginRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoginRefusal::AuthenticationFailed => {
                "authentication failed (wrong username or password?)"
            }
            LoginRefusal::AuthorizationFailed => "authorization failed",
            LoginRefusal::Expired => "the credential has expired",
            LoginRefusal::PrivacyRequired => "the server requires more privacy (TLS)",
            LoginRefusal::ContactAdmin => "the server asks to contact its administrator",
            LoginRefusal::Unavailable => "the server is temporarily unavailable",
            LoginRefusal::Limit => "a server limit was reached",
            LoginRefusal::Refused => "refused without a known reason code (its text is not shown)",
            LoginRefusal::Bad => "the server did not accept the login command",
            LoginRefusal::NoMechanism => "the server allows neither AUTH=PLAIN nor LOGIN",
            LoginRefusal::NoOAuthMechanism(name) => {
                return write!(f, "the server does not offer AUTH={name}");
            }
        })
    }
}

/// Which end of the proxy a failure happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    App,
    Upstream,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::App => "application",
            Side::Upstream => "upstream",
        })
    }
}

impl Error {
    /// Stable, low-cardinality label for metrics and audit lines.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Io {
                side: Side::App, ..
            } => "app_io",
            Error::Io {
                side: Side::Upstream,
                ..
            } => "upstream_io",
            Error::Closed { side: Side::App } => "app_closed",
            Error::Closed {
                side: Side::Upstream,
            } => "upstream_closed",
            Error::Timeout {
                side: Side::App, ..
            } => "app_timeout",
            Error::Timeout {
                side: Side::Upstream,
                ..
            } => "upstream_timeout",
            Error::UpstreamUnreachable { .. } => "upstream_unreachable",
            Error::UpstreamTls { .. } => "upstream_tls",
            Error::UpstreamAuth { .. } => "upstream_auth",
            Error::UpstreamProtocol(_) => "upstream_protocol",
            // The OAuth error code where there is a standard one (`token_invalid_grant`).
            Error::Credential(mailcred_core::Error::Token(t)) => t.code_label(),
            Error::Credential(e) => e.metric_label(),
            Error::Config(_) => "config",
        }
    }

    pub(crate) fn io(side: Side) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { side, source }
    }

    /// The connection a transport failure happened on (`None` for login and setup errors).
    pub(crate) fn side(&self) -> Option<Side> {
        match self {
            Error::Io { side, .. } | Error::Closed { side } | Error::Timeout { side, .. } => {
                Some(*side)
            }
            Error::UpstreamProtocol(_) => Some(Side::Upstream),
            _ => None,
        }
    }
}
