//! Why talking to upstream failed, found by type (a TLS failure is the error of the
//! handshake, not a word in a message), what the application is told for each class, and
//! the scrubber every relayed or logged upstream text goes through.
//!
//! Text upstream sends during the authentication phase is never relayed nor logged: a hostile
//! or broken server may echo the AUTH line (the secret, base64) back. Every other text is
//! scrubbed of the secret in each form the relay ever sent it.

use std::io;

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
    #[error("upstream offers neither AUTH PLAIN nor AUTH LOGIN")]
    NoAuthMechanism,
    /// AUTH was refused. Only the code is kept: the text may carry the secret.
    #[error("upstream refused the credential's login with {code}")]
    Auth { code: u16 },
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
            UpstreamError::NoAuthMechanism | UpstreamError::Auth { .. } => (
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
            UpstreamError::SessionRefused { code } | UpstreamError::Auth { code } => Some(*code),
            _ => None,
        }
    }
}

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
    secret: Zeroizing<Vec<u8>>,
    forms: Vec<Zeroizing<String>>,
}

impl Scrubber {
    /// The password and its AUTH PLAIN (both authzid forms) and AUTH LOGIN encodings.
    pub fn new(username: &str, password: &str) -> Self {
        let mut s = Self {
            secret: Zeroizing::new(password.as_bytes().to_vec()),
            forms: Vec::new(),
        };
        s.add(password);
        s.add(&STANDARD.encode(password));
        s.add(&STANDARD.encode(Zeroizing::new(format!("\0{username}\0{password}")).as_bytes()));
        s.add(
            &STANDARD
                .encode(Zeroizing::new(format!("{username}\0{username}\0{password}")).as_bytes()),
        );
        s
    }

    /// Another form to remove (an OAuth access token, its XOAUTH2 / OAUTHBEARER blob).
    pub fn add(&mut self, form: &str) {
        if !form.is_empty() {
            self.forms.push(Zeroizing::new(form.to_owned()));
        }
    }

    /// `text` without any known form of the secret and without any base64 run that decodes
    /// to bytes containing it.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), REDACTED);
            }
        }
        if self.secret.is_empty() {
            return out;
        }
        let mut result = String::with_capacity(out.len());
        let mut run = String::new();
        for c in out.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=') {
                run.push(c);
                continue;
            }
            if self.hides_secret(&run) {
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

    fn hides_secret(&self, run: &str) -> bool {
        // Padding may sit inside a run (two blobs back to back): look at each piece.
        run.split('=').any(|piece| self.piece_hides_secret(piece))
    }

    fn piece_hides_secret(&self, piece: &str) -> bool {
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
            decoded
                .windows(self.secret.len())
                .any(|w| w == self.secret.as_slice())
        })
    }
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
    fn added_token_is_removed() {
        let mut s = Scrubber::new("u", "p4ssword");
        s.add("ya29.token-value");
        assert_eq!(
            s.scrub("token ya29.token-value rejected"),
            "token [redacted] rejected"
        );
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
            prop_assert!(!s.hides_secret(&out.replace(' ', "")) || out.contains(REDACTED));
        }
    }
}
