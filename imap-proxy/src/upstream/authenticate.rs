//! `AUTHENTICATE XOAUTH2` / `AUTHENTICATE OAUTHBEARER` with an OAuth access token: the
//! initial response on the command line when the server has SASL-IR, else after its
//! continuation. LOGIN and AUTHENTICATE PLAIN are never used for an OAuth credential (it has
//! no password, and a token sent as one would reach a passdb that does not expect it).
//!
//! A refused token (`NO [AUTHENTICATIONFAILED]`) is reported to the token source and a fresh
//! one is tried once, on a new connection; then the proxy gives up. As for the password, no
//! upstream text from the exchange is kept: only the response code's class.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailcred_core::crd::UpstreamEndpoint;
use mailcred_core::upstream_auth::{AccessToken, OAuthLogin, SaslMechanism};
use zeroize::Zeroizing;

use super::login::{Done, LoginStep, Phase, read_step, read_until_tagged};
use super::{LoginLimits, Upstream, UpstreamIo, logged_in, open};
use crate::error::{Error, LoginRefusal};
use crate::scrub::Scrubber;
use crate::wire::conn::Conn;

/// Logs in with the credential's mechanism: at most two tokens, two connections.
pub(super) async fn oauth(
    endpoint: &UpstreamEndpoint,
    username: &str,
    oauth: &OAuthLogin,
    limits: LoginLimits,
) -> Result<Upstream, Error> {
    let name = format!("{}:{}", endpoint.host, endpoint.port);
    let mut scrubber = Scrubber::default();
    let token = oauth.tokens.access_token().await?;
    let (conn, done) = attempt(
        endpoint,
        username,
        oauth.mechanism,
        &token,
        &mut scrubber,
        limits,
    )
    .await?;
    if !token_refused(&done) {
        return logged_in(conn, done, &name, username, scrubber, limits).await;
    }
    drop(conn);
    tracing::info!(
        endpoint = %name,
        generation = token.generation,
        mechanism = oauth.mechanism.name(),
        "upstream refused the OAuth access token; fetching a fresh one and retrying once"
    );
    oauth.tokens.rejected(&token);
    let fresh = oauth.tokens.access_token().await?;
    let (conn, done) = attempt(
        endpoint,
        username,
        oauth.mechanism,
        &fresh,
        &mut scrubber,
        limits,
    )
    .await?;
    if token_refused(&done) {
        // Known bad too: the next login starts from a new token, not this one.
        oauth.tokens.rejected(&fresh);
    }
    logged_in(conn, done, &name, username, scrubber, limits).await
}

/// `NO [AUTHENTICATIONFAILED]` (or a NO without a code): the token is not good. Other
/// refusals (`[UNAVAILABLE]`, BAD) are not about the token and are not retried.
fn token_refused(done: &Done) -> bool {
    done.status == "NO"
        && matches!(
            LoginRefusal::from_response(&done.status, done.code.as_deref()),
            LoginRefusal::AuthenticationFailed | LoginRefusal::Refused | LoginRefusal::Expired
        )
}

/// A new connection and one AUTHENTICATE exchange.
async fn attempt(
    endpoint: &UpstreamEndpoint,
    username: &str,
    mechanism: SaslMechanism,
    token: &AccessToken,
    scrubber: &mut Scrubber,
    limits: LoginLimits,
) -> Result<(Conn<UpstreamIo>, Done), Error> {
    let (mut conn, caps) = open(endpoint, limits).await?;
    let has = |c: &str| caps.iter().any(|x| x == c);
    if !has(&format!("AUTH={}", mechanism.name())) {
        return Err(Error::UpstreamAuth {
            endpoint: format!("{}:{}", endpoint.host, endpoint.port),
            username: username.to_owned(),
            refusal: LoginRefusal::NoOAuthMechanism(mechanism.name()),
        });
    }
    let raw = mechanism.initial_response(username, &endpoint.host, endpoint.port, token);
    let mut response = Zeroizing::new(STANDARD.encode(raw.as_bytes()));
    // Before it goes out: from now on upstream may echo it at any time.
    scrubber.add(token.expose().as_bytes().to_vec());
    scrubber.add(response.as_bytes().to_vec());
    response.push_str("\r\n");
    let command = format!("m3 AUTHENTICATE {}", mechanism.name());
    if has("SASL-IR") {
        conn.write(format!("{command} ").as_bytes()).await?;
        conn.write_secret(response.as_bytes()).await?;
    } else {
        conn.write(format!("{command}\r\n").as_bytes()).await?;
        conn.flush().await?;
        if let LoginStep::Done(d) =
            read_step(&mut conn, b"m3", limits, true, Phase::AfterSecret).await?
        {
            return Ok((conn, d));
        }
        conn.write_secret(response.as_bytes()).await?;
    }
    conn.flush().await?;
    match read_step(&mut conn, b"m3", limits, true, Phase::AfterSecret).await? {
        LoginStep::Done(d) => Ok((conn, d)),
        LoginStep::Continue => {
            // The server's error challenge (base64 JSON, RFC 7628 §3.2.2): answer it so the
            // tagged NO follows. OAUTHBEARER's answer is a lone %x01 (§3.2.3); XOAUTH2 servers
            // take an empty response. A second challenge is a protocol error, never a loop.
            let ack: &[u8] = match mechanism {
                SaslMechanism::Xoauth2 => b"\r\n",
                SaslMechanism::Oauthbearer => b"AQ==\r\n",
            };
            conn.write(ack).await?;
            conn.flush().await?;
            let done = read_until_tagged(&mut conn, b"m3", limits, Phase::AfterSecret).await?;
            Ok((conn, done))
        }
    }
}
