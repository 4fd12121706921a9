//! Why talking to upstream failed, found by type (a TLS failure is the error of the
//! handshake, not a word in a message), what the application is told for each class, and
//! the scrubber every relayed or logged upstream text goes through.
//!
//! Text upstream sends during the authentication phase is never relayed nor logged: a hostile
//! or broken server may echo the AUTH line (the secret, base64) back. Every other text is
//! scrubbed of the secret in each form the relay ever sent it.

use std::io;
use std::sync::Mutex;

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use zeroize::Zeroizing;

use crate::outcome::{Outcome, Reason};
use crate::wire::reply::Reply;

/// A failure on the way to (or while talking to) the upstream server.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream configuration: {0}")]
    Config(#[source] crate::Error),
    #[error("connecting to upstream failed: {0}")]
    Connect(#[source] io::Error),
    #[error("upstream I/O failed: {0}")]
    Io(#[source] io::Error),
    #[error("upstream closed the connection")]
    Closed,
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    #[error("upstream does not offer STARTTLS")]
    NoStartTls,
    #[error("upstream sent {0} bytes after its STARTTLS reply, before the TLS handshake")]
    PreTlsInjection(usize),
    #[error("upstream broke the SMTP protocol: {0}")]
    Protocol(&'static str),
    /// The greeting, EHLO or STARTTLS was refused (the text is not kept).
    #[error("upstream refused the session with {code}")]
    SessionRefused { code: u16 },
    /// The server does not offer the mechanism(s) the credential may use (`PLAIN or LOGIN`
    /// for a password, exactly the sealed one for OAuth: no fallback to a password).
    #[error("upstream does not offer AUTH {0}")]
    NoAuthMechanism(&'static str),
    /// AUTH was refused. Only the code is kept: the text may carry the secret.
    #[error("upstream refused the credential's login with {code}")]
    Auth { code: u16 },
    /// The OAuth access token was refused, and so was a freshly fetched one (retried once).
    #[error("upstream refused the OAuth access token with {code}, and a fresh one too")]
    TokenRejected { code: u16 },
    /// No access token could be obtained (the token endpoint's trouble, by its error code).
    #[error("no OAuth access token for upstream: {0}")]
    Token(#[source] mailcred_core::Error),
}

impl UpstreamError {
    /// The reply for the application and the audit reason. Everything about the path is
    /// temporary: the message is fine and may go through once the path is fixed.
    pub fn classify(&self) -> (Reply, Outcome, Reason) {
        let (reply, reason) = match self {
            UpstreamError::Config(e) => (
                Reply::new(451, "4.3.5", format!("upstream configuration: {e}")),
                Reason::UpstreamConfig(e.metric_label()),
            ),
            UpstreamError::Connect(e) => (
                Reply::new(451, "4.4.1", format!("upstream unavailable: {e}")),
                Reason::UpstreamUnavailable,
            ),
            UpstreamError::Io(_) | UpstreamError::Closed | UpstreamError::SessionRefused { .. } => {
                (
                    Reply::new(451, "4.4.1", "upstream unavailable: the connection failed"),
                    Reason::UpstreamUnavailable,
                )
            }
            UpstreamError::Timeout => (
                Reply::new(
                    451,
                    "4.4.2",
                    "upstream did not answer in time; try again later",
                ),
                Reason::UpstreamTimeout,
            ),
            UpstreamError::Tls(e) => (
                Reply::new(
                    454,
                    "4.7.5",
                    format!("upstream TLS failed (certificate not verified?): {e}"),
                ),
                Reason::UpstreamTls,
            ),
            UpstreamError::NoStartTls => (
                Reply::new(454, "4.7.5", "upstream TLS failed: STARTTLS is not offered"),
                Reason::UpstreamTls,
            ),
            UpstreamError::PreTlsInjection(_) | UpstreamError::Protocol(_) => (
                Reply::new(451, "4.5.0", format!("upstream protocol error: {self}")),
                Reason::UpstreamProtocol,
            ),
            UpstreamError::TokenRejected { .. } => (
                Reply::new(
                    454,
                    "4.7.0",
                    "upstream refused the credential's OAuth access token, a fresh one too (grant revoked, or no mailbox permission?)",
                ),
                Reason::UpstreamAuth,
            ),
            UpstreamError::Token(e) => {
                let label = token_label(e);
                (
                    Reply::new(
                        454,
                        "4.7.0",
                        format!("no OAuth access token for upstream ({label}); try again later"),
                    ),
                    Reason::UpstreamToken(label),
                )
            }
            UpstreamError::NoAuthMechanism(_) | UpstreamError::Auth { .. } => (
                // A fixed text: the class only, never what upstream said.
                Reply::new(
                    454,
                    "4.7.0",
                    "upstream authentication failed for the credential's user (re-seal the password?)",
                ),
                Reason::UpstreamAuth,
            ),
        };
        (reply, Outcome::TemporaryFailure, reason)
    }

    /// The upstream reply code, when this failure came with one.
    pub fn code(&self) -> Option<u16> {
        match self {
            UpstreamError::SessionRefused { code }
            | UpstreamError::Auth { code }
            | UpstreamError::TokenRejected { code } => Some(*code),
            _ => None,
        }
    }
}

/// The audit reason of a token failure: the OAuth error code where the endpoint sent a
/// standard one (`token_invalid_grant`), else the failure's class (`token_timeout`).
fn token_label(e: &mailcred_core::Error) -> &'static str {
    match e {
        mailcred_core::Error::Token(t) => t.code_label(),
        other => other.metric_label(),
    }
}

/// Tokens whose forms the scrubber keeps: the current one and a few it replaced (a pooled
/// connection may still be authenticated with an older token).
const MAX_TOKENS: usize = 4;

/// Shortest base64 run examined for an encoded secret.
const MIN_BASE64_RUN: usize = 8;
const REDACTED: &str = "[redacted]";
/// Decodes a run cut anywhere: no padding needed, stray trailing bits allowed.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Removes the secret, in every encoding the relay sent it in, from upstream text.
pub struct Scrubber {
    password: Secrets,
    /// OAuth access tokens, added as they are sent (the scrubber outlives each token).
    tokens: Mutex<Vec<Secrets>>,
}

/// One secret and its wire forms.
struct Secrets {
    secret: Zeroizing<Vec<u8>>,
    forms: Vec<Zeroizing<String>>,
}

impl Secrets {
    fn new(secret: &str, forms: &[&str]) -> Self {
        Self {
            secret: Zeroizing::new(secret.as_bytes().to_vec()),
            forms: std::iter::once(secret)
                .chain(forms.iter().copied())
                .filter(|f| !f.is_empty())
                .map(|f| Zeroizing::new(f.to_owned()))
                .collect(),
        }
    }
}

impl Scrubber {
    /// The password and its AUTH PLAIN (both authzid forms) and AUTH LOGIN encodings.
    pub fn new(username: &str, password: &str) -> Self {
        let plain = STANDARD.encode(Zeroizing::new(format!("\0{username}\0{password}")).as_bytes());
        let plain_authz = STANDARD
            .encode(Zeroizing::new(format!("{username}\0{username}\0{password}")).as_bytes());
        let login = STANDARD.encode(password);
        Self {
            password: Secrets::new(password, &[&login, &plain, &plain_authz]),
            tokens: Mutex::new(Vec::new()),
        }
    }

    /// A scrubber for an OAuth credential: no password, tokens come with [`Self::add_token`].
    pub fn for_oauth() -> Self {
        Self {
            password: Secrets::new("", &[]),
            tokens: Mutex::new(Vec::new()),
        }
    }

    /// An access token about to be sent, with the base64 SASL initial response carrying it.
    pub fn add_token(&self, token: &str, initial_response_b64: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens
            .iter()
            .any(|t| t.secret.as_slice() == token.as_bytes())
        {
            return;
        }
        if tokens.len() >= MAX_TOKENS {
            tokens.remove(0);
        }
        tokens.push(Secrets::new(token, &[initial_response_b64]));
    }

    /// `text` without any known form of a secret and without any base64 run that decodes
    /// to bytes containing one.
    pub fn scrub(&self, text: &str) -> String {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let all: Vec<&Secrets> = std::iter::once(&self.password)
            .chain(tokens.iter())
            .collect();
        let mut out = text.to_owned();
        for form in all.iter().flat_map(|s| s.forms.iter()) {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), REDACTED);
            }
        }
        let secrets: Vec<&[u8]> = all
            .iter()
            .map(|s| s.secret.as_slice())
            .filter(|s| !s.is_empty())
            .collect();
        if secrets.is_empty() {
            return out;
        }
        let mut result = String::with_capacity(out.len());
        let mut run = String::new();
        for c in out.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=') {
                run.push(c);
                continue;
            }
            if hides_secret(&run, &secrets) {
                result.push_str(REDACTED);
            } else {
                result.push_str(&run);
            }
            run.clear();
            result.push(c);
        }
        result.pop();
        result
    }
}

fn hides_secret(run: &str, secrets: &[&[u8]]) -> bool {
    // Padding may sit inside a run (two blobs back to back): look at each piece.
    run.split('=')
        .any(|piece| piece_hides_secret(piece, secrets))
}

fn piece_hides_secret(piece: &str, secrets: &[&[u8]]) -> bool {
    if piece.len() < MIN_BASE64_RUN {
        return false;
    }
    // Any alignment: a run may start inside the encoded blob.
    (0..4).any(|skip| {
        let Some(part) = piece.get(skip..) else {
            return false;
        };
        // One symbol alone encodes no byte.
        let usable = part.len() - usize::from(part.len() % 4 == 1);
        let Ok(decoded) = LENIENT.decode(&part[..usable]).map(Zeroizing::new) else {
            return false;
        };
        secrets
            .iter()
            .any(|secret| decoded.windows(secret.len()).any(|w| w == *secret))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_form_of_the_secret_is_removed() {
        let s = Scrubber::new("app@example.test", "hunter2-secret");
        let plain = STANDARD.encode("\0app@example.test\0hunter2-secret");
        let login = STANDARD.encode("hunter2-secret");
        for text in [
            format!("5.7.8 you sent: AUTH PLAIN {plain}"),
            format!("you sent {login} as the password"),
            "bad password hunter2-secret".to_string(),
            format!("x{}y", STANDARD.encode("prefix hunter2-secret suffix")),
        ] {
            let out = s.scrub(&text);
            assert!(!out.contains("hunter2-secret"), "{out}");
            assert!(!out.contains(&plain) && !out.contains(&login), "{out}");
            assert!(out.contains(REDACTED), "{out}");
        }
        assert_eq!(
            s.scrub("5.1.1 <nobody@example.test>: unknown"),
            "5.1.1 <nobody@example.test>: unknown"
        );
    }

    #[test]
    fn added_token_is_removed_in_every_form() {
        let s = Scrubber::for_oauth();
        let blob = STANDARD.encode("user=u\x01auth=Bearer ya29.token-value\x01\x01");
        s.add_token("ya29.token-value", &blob);
        assert_eq!(
            s.scrub("token ya29.token-value rejected"),
            "token [redacted] rejected"
        );
        let out = s.scrub(&format!("you sent AUTH XOAUTH2 {blob}"));
        assert_eq!(out, "you sent AUTH XOAUTH2 [redacted]");
        // A run cut out of the middle of the blob still decodes to the token.
        let inner = STANDARD.encode("xx auth=Bearer ya29.token-value yy");
        assert!(s.scrub(&inner[4..]).contains(REDACTED));
        assert_eq!(s.scrub("5.1.1 unknown user"), "5.1.1 unknown user");
    }

    #[test]
    fn old_tokens_are_forgotten_beyond_the_bound() {
        let s = Scrubber::for_oauth();
        for i in 0..(MAX_TOKENS + 2) {
            s.add_token(&format!("token-number-{i}"), "");
        }
        assert!(s.scrub("token-number-0").contains("token-number-0"));
        let last = format!("token-number-{}", MAX_TOKENS + 1);
        assert_eq!(s.scrub(&last), REDACTED);
    }

    proptest! {
        /// Wherever the secret's encodings sit in upstream text, none survive scrubbing.
        #[test]
        fn scrubbed_text_never_decodes_to_the_secret(
            password in "[ -~]{4,24}",
            before in "[ -~]{0,30}",
            after in "[ -~]{0,30}",
            form in 0usize..4,
        ) {
            let s = Scrubber::new("app@example.test", &password);
            let encoded = match form {
                0 => password.clone(),
                1 => STANDARD.encode(&password),
                2 => STANDARD.encode(format!("\0app@example.test\0{password}")),
                _ => STANDARD.encode(format!("xy{password}")),
            };
            let out = s.scrub(&format!("{before}{encoded}{after}"));
            prop_assert!(!out.contains(&password));
            prop_assert!(!out.contains(&STANDARD.encode(&password)));
            let secret: &[u8] = password.as_bytes();
            prop_assert!(!hides_secret(&out.replace(' ', ""), &[secret]) || out.contains(REDACTED));
        }
    }
}
