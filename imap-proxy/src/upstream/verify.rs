//! A one-off login check with the proxy's own upstream path (TCP, verified TLS, CAPABILITY,
//! AUTHENTICATE PLAIN or LOGIN from login.rs; OAuth through `connect_and_login`), then
//! LOGOUT. For the registration API and `kubectl mailcred verify --login`.
//!
//! Unlike the proxy, the check reports the server's refusal text (`NO [AUTHENTICATIONFAILED]
//! Authentication failed.`): whoever registers an account must learn why. The raw text is
//! scrubbed of the password in every form the login sent it before it is made printable.

use std::time::Duration;

use mailcred_core::UpstreamAuth;
use mailcred_core::crd::UpstreamEndpoint;
use mailcred_core::login_check::LoginCheckError;

use super::login::{Done, Phase};
use super::{LoginLimits, connect_and_login, password_login};
use crate::error::{Error, LoginRefusal};
use crate::scrub::Scrubber;
use crate::wire::response::printable;

/// Longest response line read during the check.
const MAX_LINE: usize = 64 * 1024;

/// Logs in to the IMAP server `endpoint` as `username` with `auth`, each step bounded by
/// `timeout`. `Ok` only when the server answered the login with a tagged OK.
pub async fn verify_login(
    endpoint: &UpstreamEndpoint,
    username: &str,
    auth: &UpstreamAuth,
    timeout: Duration,
) -> Result<(), LoginCheckError> {
    let limits = LoginLimits {
        timeout,
        max_line: MAX_LINE,
    };
    let password = match auth {
        UpstreamAuth::Password(p) => p,
        UpstreamAuth::OAuth(_) => {
            let mut upstream = connect_and_login(endpoint, username, auth, limits)
                .await
                .map_err(classify)?;
            logout(&mut upstream.conn).await;
            return Ok(());
        }
    };
    let (mut conn, done) = password_login(endpoint, username, password, limits, Phase::Check)
        .await
        .map_err(classify)?;
    if done.status != "OK" {
        let scrubber = Scrubber::for_password(username, password.expose().as_bytes());
        return Err(LoginCheckError::Rejected {
            reason: reason(&done, &scrubber),
        });
    }
    logout(&mut conn).await;
    Ok(())
}

/// `NO [AUTHENTICATIONFAILED] Authentication failed.`: the status and the scrubbed text.
fn reason(done: &Done, scrubber: &Scrubber) -> String {
    let text = done
        .unscrubbed
        .as_ref()
        .map(|raw| printable(&scrubber.scrubbed(raw)))
        .unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        done.status.clone()
    } else {
        format!("{} {text}", done.status)
    }
}

/// Politeness only: the login was accepted whatever LOGOUT gets.
async fn logout<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    conn: &mut crate::wire::conn::Conn<S>,
) {
    if conn.write(b"m9 LOGOUT\r\n").await.is_ok() {
        let _ = conn.flush().await;
    }
}

/// The check's class of a proxy failure (by variant, never by message text).
fn classify(e: Error) -> LoginCheckError {
    match e {
        Error::UpstreamAuth { refusal, .. } => match refusal {
            LoginRefusal::NoMechanism | LoginRefusal::NoOAuthMechanism(_) => {
                LoginCheckError::Unsupported {
                    detail: refusal.to_string(),
                }
            }
            _ => LoginCheckError::Rejected {
                reason: format!("{} ({refusal})", refusal.reply_code()),
            },
        },
        Error::Timeout { .. } => LoginCheckError::Timeout,
        Error::UpstreamTls { .. } => LoginCheckError::Tls {
            detail: e.to_string(),
        },
        Error::UpstreamUnreachable { .. } | Error::Io { .. } | Error::Closed { .. } => {
            LoginCheckError::Unreachable {
                detail: e.to_string(),
            }
        }
        Error::UpstreamProtocol(_) => LoginCheckError::Protocol {
            detail: e.to_string(),
        },
        Error::Credential(_) => LoginCheckError::Token {
            detail: e.to_string(),
        },
        Error::Config(_) => LoginCheckError::Tls {
            detail: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_scrubbed_before_it_is_cut_or_made_printable() {
        let password = "pw-\u{e9}-secret";
        let scrubber = Scrubber::for_password("u", password.as_bytes());
        let mut raw = b"x".repeat(185);
        raw.extend_from_slice(format!("you sent {password}").as_bytes());
        let done = Done {
            status: "NO".into(),
            code: None,
            text: String::new(),
            unscrubbed: Some(zeroize::Zeroizing::new(raw)),
            capabilities: Vec::new(),
        };
        let r = reason(&done, &scrubber);
        assert!(r.starts_with("NO xxx"), "{r}");
        assert!(!r.contains("pw-"), "{r}");
        let empty = Done {
            unscrubbed: None,
            ..done
        };
        assert_eq!(reason(&empty, &scrubber), "NO");
    }

    #[test]
    fn failures_are_classified_by_variant() {
        let e = Error::UpstreamAuth {
            endpoint: "h:1".into(),
            username: "u".into(),
            refusal: LoginRefusal::AuthenticationFailed,
        };
        assert!(matches!(classify(e), LoginCheckError::Rejected { .. }));
        let e = Error::UpstreamTls {
            endpoint: "h:1".into(),
            detail: "x".into(),
        };
        assert!(matches!(classify(e), LoginCheckError::Tls { .. }));
    }
}
