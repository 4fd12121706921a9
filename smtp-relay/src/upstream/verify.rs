//! A one-off login check: connect with the relay's own path (TCP, verified TLS from
//! `mailcred_core::tls`, EHLO, AUTH from sasl.rs), report whether upstream accepted the login,
//! and QUIT. For the registration API and `kubectl mailcred verify --login`.
//!
//! Unlike the relay, the check reports the server's refusal text: whoever registers an
//! account must learn why the server said no. The text is scrubbed of the password in every
//! form AUTH sent it (errors.rs) before it leaves this file.

use std::time::Duration;

use mailcred_core::UpstreamAuth;
use mailcred_core::crd::UpstreamEndpoint;
use mailcred_core::login_check::LoginCheckError;
use mailcred_core::upstream_auth::OAuthLogin;
use zeroize::Zeroizing;

use super::connect::{Target, TargetAuth, open};
use super::errors::{Scrubber, UpstreamError};
use super::sasl;

/// Longest server reason kept (a reply is at most 64 lines of 2 KiB; nobody reads more).
const MAX_REASON: usize = 512;
/// The EHLO name of the check (the relay's default hostname).
const HELLO: &str = "localhost";

/// Logs in to the SMTP submission server `endpoint` as `username` with `auth`, each step
/// bounded by `timeout`. `Ok` only when the server answered AUTH with 235.
pub async fn verify_login(
    endpoint: &UpstreamEndpoint,
    username: &str,
    auth: &UpstreamAuth,
    timeout: Duration,
) -> Result<(), LoginCheckError> {
    let tls = mailcred_core::tls::for_endpoint(endpoint).map_err(|e| LoginCheckError::Tls {
        detail: e.to_string(),
    })?;
    let (target_auth, scrubber) = match auth {
        UpstreamAuth::Password(p) => (
            TargetAuth::Password(Zeroizing::new(p.expose().to_owned())),
            Scrubber::new(username, p.expose()),
        ),
        UpstreamAuth::OAuth(login) => (
            TargetAuth::OAuth(OAuthLogin {
                mechanism: login.mechanism,
                tokens: std::sync::Arc::clone(&login.tokens),
            }),
            Scrubber::for_oauth(),
        ),
    };
    let target = Target {
        host: endpoint.host.clone(),
        port: endpoint.port,
        mode: endpoint.tls,
        tls,
        username: username.to_owned(),
        auth: target_auth,
        hello: HELLO.to_owned(),
        timeout,
        scrubber,
    };
    let mut conn = match &target.auth {
        TargetAuth::Password(password) => {
            let (mut conn, capabilities) = open(&target).await.map_err(classify)?;
            let reply = sasl::password_reply(&mut conn, &capabilities, username, password)
                .await
                .map_err(classify)?;
            if reply.code != 235 {
                let text = target.scrubber.scrub(&reply.text());
                return Err(LoginCheckError::Rejected {
                    reason: reason(reply.code, &text),
                });
            }
            conn
        }
        TargetAuth::OAuth(login) => sasl::oauth(&target, login).await.map_err(classify)?,
    };
    // Politeness only: the login was accepted whatever QUIT gets.
    let _ = conn.command(b"QUIT").await;
    Ok(())
}

/// `535 5.7.8 Error: authentication failed: ...`, bounded; the code alone when no text.
fn reason(code: u16, scrubbed: &str) -> String {
    let text: String = scrubbed
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON)
        .collect();
    if text.trim().is_empty() {
        format!("{code}")
    } else {
        format!("{code} {}", text.trim())
    }
}

/// The check's class of a relay failure (by type, never by message text).
fn classify(e: UpstreamError) -> LoginCheckError {
    match e {
        UpstreamError::Auth { code } | UpstreamError::TokenRejected { code } => {
            LoginCheckError::Rejected {
                reason: format!("{code} (the server refused the login; its text is not shown)"),
            }
        }
        UpstreamError::Timeout => LoginCheckError::Timeout,
        UpstreamError::Tls(_) | UpstreamError::NoStartTls => LoginCheckError::Tls {
            detail: e.to_string(),
        },
        UpstreamError::Config(_) => LoginCheckError::Tls {
            detail: e.to_string(),
        },
        UpstreamError::Connect(_)
        | UpstreamError::Io(_)
        | UpstreamError::Closed
        | UpstreamError::SessionRefused { .. } => LoginCheckError::Unreachable {
            detail: e.to_string(),
        },
        UpstreamError::NoAuthMechanism(_) => LoginCheckError::Unsupported {
            detail: e.to_string(),
        },
        UpstreamError::PreTlsInjection(_) | UpstreamError::Protocol(_) => {
            LoginCheckError::Protocol {
                detail: e.to_string(),
            }
        }
        UpstreamError::Token(_) => LoginCheckError::Token {
            detail: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_and_printable() {
        assert_eq!(reason(535, ""), "535");
        assert_eq!(reason(535, " 5.7.8 bad\u{7} "), "535 5.7.8 bad");
        assert!(reason(535, &"x".repeat(10_000)).len() <= MAX_REASON + 4);
    }

    #[test]
    fn failures_are_classified_by_type() {
        assert!(matches!(
            classify(UpstreamError::Timeout),
            LoginCheckError::Timeout
        ));
        assert!(matches!(
            classify(UpstreamError::NoStartTls),
            LoginCheckError::Tls { .. }
        ));
        assert!(matches!(
            classify(UpstreamError::Closed),
            LoginCheckError::Unreachable { .. }
        ));
        assert!(matches!(
            classify(UpstreamError::Auth { code: 535 }),
            LoginCheckError::Rejected { .. }
        ));
    }
}
