//! The outcome of a one-off upstream login check: the registration API (sidecar) and
//! `kubectl mailcred verify --login` try a username and secret against the SMTP and/or IMAP
//! server before anything is sealed or stored. The front-end crates implement the check
//! (`mailcred_smtp::verify_login`, `mailcred_imap::verify_login`); callers tell a wrong
//! password from a broken path by this enum, never by a message's words.

use std::fmt;

/// Why a login check did not pass. No variant carries the secret: the server's reason is
/// scrubbed of every form of it before it is put here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginCheckError {
    /// The server answered and refused the login (wrong password, disabled account, ...).
    /// `reason` is the server's own text (or its reply code when it sent none), scrubbed.
    Rejected { reason: String },
    /// No connection: DNS, refused, reset, closed before the login.
    Unreachable { detail: String },
    /// The TLS handshake failed (certificate not verified, wrong name, bad caPem), or the
    /// server does not offer STARTTLS.
    Tls { detail: String },
    /// No answer within the bound.
    Timeout,
    /// The server offers no mechanism the check may use (PLAIN/LOGIN, or the OAuth one).
    Unsupported { detail: String },
    /// The server broke the protocol.
    Protocol { detail: String },
    /// An OAuth access token could not be obtained (the token endpoint's trouble).
    Token { detail: String },
}

impl LoginCheckError {
    /// Snake-case class, for API error codes, metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            LoginCheckError::Rejected { .. } => "rejected",
            LoginCheckError::Unreachable { .. } => "unreachable",
            LoginCheckError::Tls { .. } => "tls",
            LoginCheckError::Timeout => "timeout",
            LoginCheckError::Unsupported { .. } => "unsupported",
            LoginCheckError::Protocol { .. } => "protocol",
            LoginCheckError::Token { .. } => "token",
        }
    }
}

impl fmt::Display for LoginCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginCheckError::Rejected { reason } => {
                write!(f, "the server refused the login: {reason}")
            }
            LoginCheckError::Unreachable { detail } => {
                write!(f, "cannot reach the server: {detail}")
            }
            LoginCheckError::Tls { detail } => write!(f, "TLS with the server failed: {detail}"),
            LoginCheckError::Timeout => f.write_str("the server did not answer in time"),
            LoginCheckError::Unsupported { detail } => {
                write!(f, "the server offers no usable login mechanism: {detail}")
            }
            LoginCheckError::Protocol { detail } => {
                write!(f, "the server broke the protocol: {detail}")
            }
            LoginCheckError::Token { detail } => write!(f, "no OAuth access token: {detail}"),
        }
    }
}

impl std::error::Error for LoginCheckError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case() {
        let all = [
            LoginCheckError::Rejected { reason: "x".into() },
            LoginCheckError::Unreachable { detail: "x".into() },
            LoginCheckError::Tls { detail: "x".into() },
            LoginCheckError::Timeout,
            LoginCheckError::Unsupported { detail: "x".into() },
            LoginCheckError::Protocol { detail: "x".into() },
            LoginCheckError::Token { detail: "x".into() },
        ];
        let labels: std::collections::BTreeSet<_> = all.iter().map(|e| e.label()).collect();
        assert_eq!(labels.len(), all.len());
        assert!(
            labels
                .iter()
                .all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
        assert!(all[0].to_string().contains("refused the login: x"));
    }
}
