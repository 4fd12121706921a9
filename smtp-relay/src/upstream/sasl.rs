//! AUTH upstream: PLAIN or LOGIN with the sealed password (whichever the server offers, PLAIN
//! first), or the credential's OAuth mechanism (XOAUTH2 / OAUTHBEARER) with an access token.
//!
//! OAuth never falls back to a password mechanism: the credential has none, and trying PLAIN
//! with a token would send it where the server does not expect a token. A token the server
//! refuses with 535 is reported to the token source and a fresh token is tried once, on a new
//! connection (a server that refused AUTH may count failures per connection); then the relay
//! gives up. Replies here are judged by code only; their text is dropped.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mailcred_core::upstream_auth::{AccessToken, OAuthLogin, SaslMechanism};
use zeroize::Zeroizing;

use super::client::{Conn, UpstreamReply};
use super::connect::{Io, Stream, Target, open};
use super::errors::UpstreamError;

/// The mechanisms of the `AUTH` extension line.
fn mechanisms(capabilities: &[String]) -> Vec<&str> {
    capabilities
        .iter()
        .filter_map(|c| c.strip_prefix("AUTH ").or_else(|| c.strip_prefix("AUTH=")))
        .flat_map(str::split_whitespace)
        .collect()
}

/// AUTH PLAIN or LOGIN with the password.
pub(super) async fn password<S: Stream>(
    conn: &mut Conn<S>,
    capabilities: &[String],
    username: &str,
    password: &str,
) -> Result<(), UpstreamError> {
    let reply = password_reply(conn, capabilities, username, password).await?;
    if reply.code == 235 {
        Ok(())
    } else {
        Err(UpstreamError::Auth { code: reply.code })
    }
}

/// AUTH PLAIN or LOGIN; the server's final reply (235 or the refusal), text and all. Only the
/// login check (verify.rs) looks at the text, and only after scrubbing it.
pub(super) async fn password_reply<S: Stream>(
    conn: &mut Conn<S>,
    capabilities: &[String],
    username: &str,
    password: &str,
) -> Result<UpstreamReply, UpstreamError> {
    let offered = mechanisms(capabilities);
    let reply = if offered.contains(&"PLAIN") {
        let blob = Zeroizing::new(format!("\0{username}\0{password}"));
        let line = Zeroizing::new(format!("AUTH PLAIN {}", STANDARD.encode(blob.as_bytes())));
        conn.command(line.as_bytes()).await?
    } else if offered.contains(&"LOGIN") {
        expect_challenge(conn.command(b"AUTH LOGIN").await?)?;
        let user = Zeroizing::new(STANDARD.encode(username.as_bytes()));
        expect_challenge(conn.command(user.as_bytes()).await?)?;
        let pass = Zeroizing::new(STANDARD.encode(password.as_bytes()));
        conn.command(pass.as_bytes()).await?
    } else {
        return Err(UpstreamError::NoAuthMechanism("PLAIN or LOGIN"));
    };
    Ok(reply)
}

fn expect_challenge(reply: UpstreamReply) -> Result<(), UpstreamError> {
    if reply.code == 334 {
        Ok(())
    } else {
        Err(UpstreamError::Auth { code: reply.code })
    }
}

/// The outcome of one OAuth AUTH exchange.
enum Attempt {
    Accepted(Conn<Io>),
    /// 535: the token is not (or no longer) good; worth one fresh token.
    TokenRefused {
        code: u16,
    },
}

/// Connects and authenticates with an access token: at most two tokens, two connections.
pub(super) async fn oauth(target: &Target, login: &OAuthLogin) -> Result<Conn<Io>, UpstreamError> {
    let token = login
        .tokens
        .access_token()
        .await
        .map_err(UpstreamError::Token)?;
    let code = match attempt(target, login.mechanism, &token).await? {
        Attempt::Accepted(conn) => return Ok(conn),
        Attempt::TokenRefused { code } => code,
    };
    tracing::info!(
        code,
        generation = token.generation,
        mechanism = login.mechanism.name(),
        "upstream refused the OAuth access token; fetching a fresh one and retrying once"
    );
    login.tokens.rejected(&token);
    let fresh = login
        .tokens
        .access_token()
        .await
        .map_err(UpstreamError::Token)?;
    match attempt(target, login.mechanism, &fresh).await? {
        Attempt::Accepted(conn) => Ok(conn),
        Attempt::TokenRefused { code } => {
            // Known bad too: the next connection starts from a new token, not this one.
            login.tokens.rejected(&fresh);
            Err(UpstreamError::TokenRejected { code })
        }
    }
}

/// A new connection, then `AUTH <mechanism> <initial response>`.
async fn attempt(
    target: &Target,
    mechanism: SaslMechanism,
    token: &AccessToken,
) -> Result<Attempt, UpstreamError> {
    let (mut conn, capabilities) = open(target).await?;
    if !mechanisms(&capabilities).contains(&mechanism.name()) {
        return Err(UpstreamError::NoAuthMechanism(mechanism.name()));
    }
    let raw = mechanism.initial_response(&target.username, &target.host, target.port, token);
    let encoded = Zeroizing::new(STANDARD.encode(raw.as_bytes()));
    // Before it goes out: from now on upstream may echo it in any reply.
    target.scrubber.add_token(token.expose(), &encoded);
    let line = Zeroizing::new(format!("AUTH {} {}", mechanism.name(), *encoded));
    let mut reply = conn.command(line.as_bytes()).await?;
    if reply.code == 334 {
        // The server's error challenge (base64 JSON, RFC 7628 §3.2.2): the client must answer
        // before the final reply comes. OAUTHBEARER's answer is a lone %x01 (§3.2.3); XOAUTH2
        // servers (Google, Microsoft) take an empty response.
        let ack: &[u8] = match mechanism {
            SaslMechanism::Xoauth2 => b"",
            SaslMechanism::Oauthbearer => b"AQ==",
        };
        reply = conn.command(ack).await?;
    }
    match reply.code {
        235 => Ok(Attempt::Accepted(conn)),
        535 => Ok(Attempt::TokenRefused { code: reply.code }),
        // A second challenge would be a loop; anything else is not about this token.
        334 => Err(UpstreamError::Protocol(
            "AUTH answered with a second challenge",
        )),
        code => Err(UpstreamError::Auth { code }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_from_either_auth_form() {
        let caps = vec![
            "PIPELINING".into(),
            "AUTH PLAIN XOAUTH2".into(),
            "AUTH=LOGIN".into(),
        ];
        assert_eq!(mechanisms(&caps), vec!["PLAIN", "XOAUTH2", "LOGIN"]);
    }
}
