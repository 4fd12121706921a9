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

    #[error("upstream IMAP server {endpoint} rejected the login of {username}: {detail}")]
    UpstreamAuth {
        endpoint: String,
        username: String,
        detail: String,
    },

    #[error("upstream IMAP server broke the protocol: {0}")]
    UpstreamProtocol(String),

    #[error("credential unavailable: {0}")]
    Credential(#[from] mailcred_core::Error),

    #[error("IMAP proxy configuration: {0}")]
    Config(String),
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
            Error::Credential(e) => e.metric_label(),
            Error::Config(_) => "config",
        }
    }

    pub(crate) fn io(side: Side) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { side, source }
    }
}
