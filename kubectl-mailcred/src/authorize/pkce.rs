//! Authorization code + PKCE S256 (RFC 7636) with a loopback redirect (RFC 8252 §7.3): listen
//! on 127.0.0.1 on a port the system picks, print the URL (no browser is opened: the URL is
//! the person's to open), take exactly one redirect whose `state` matches, then exchange the
//! code with the verifier. A redirect with a wrong or missing `state` ends the run: it is not
//! the answer to this request (RFC 6749 §10.12).

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailcred_core::crd::OAuthSpec;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zeroize::Zeroizing;

use super::endpoints::Endpoints;
use super::token::{self, Client, Outcome};

const CALLBACK_PATH: &str = "/callback";
/// A browser's GET is well under this; anything longer is not our redirect.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// One connection may not hold the listener longer than this.
const PER_CONNECTION: Duration = Duration::from_secs(10);
/// Connections that are not the callback (favicon, probes) before we stop listening.
const MAX_CONNECTIONS: usize = 32;

fn random_b64url(bytes: usize) -> anyhow::Result<Zeroizing<String>> {
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(&*buf)))
}

/// RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))).
pub fn challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

pub async fn run(
    client: &Client,
    spec: &OAuthSpec,
    endpoints: &Endpoints,
    timeout: Duration,
) -> anyhow::Result<SecretString> {
    let base = endpoints
        .authorization
        .as_deref()
        .context("no authorization endpoint")?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("cannot listen on 127.0.0.1 for the redirect")?;
    let port = listener.local_addr()?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
    // 32 random bytes: a 43-character verifier, the RFC 7636 §4.1 minimum length.
    let verifier = random_b64url(32)?;
    let state = random_b64url(16)?;
    let scope = client.scope();
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", &spec.client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge(&verifier))
        .append_pair("code_challenge_method", "S256")
        // OpenID servers keep offline_access (a refresh token) only with consent asked.
        .append_pair("prompt", "consent");
    if !scope.is_empty() {
        query.append_pair("scope", &scope);
    }
    if endpoints.google {
        query.append_pair("access_type", "offline");
    }
    let separator = if base.contains('?') { '&' } else { '?' };
    eprintln!("To sign in, open this URL in a browser on this machine:");
    eprintln!("{base}{separator}{}", query.finish());
    eprintln!(
        "waiting up to {} s for the redirect to {redirect_uri} ...",
        timeout.as_secs()
    );
    let code = tokio::time::timeout(timeout, accept(&listener, &state))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no sign-in within {} s (--timeout): nothing was sealed; run authorize again",
                timeout.as_secs()
            )
        })??;
    drop(listener);
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    match client.exchange(&fields).await? {
        Outcome::RefreshToken(token) => Ok(token),
        Outcome::Refused(code) => Err(token::refusal(&code)),
    }
}

/// What one connection to the loopback listener was.
enum Callback {
    Code(Zeroizing<String>),
    /// The authorization server's error redirect (state matched).
    Error(String),
    StateMismatch,
    /// Not the callback (another path, a broken request): answered and ignored.
    Other,
}

async fn accept(listener: &TcpListener, state: &str) -> anyhow::Result<Zeroizing<String>> {
    for _ in 0..MAX_CONNECTIONS {
        let (stream, _) = listener
            .accept()
            .await
            .context("the redirect listener failed")?;
        let outcome = tokio::time::timeout(PER_CONNECTION, handle(stream, state))
            .await
            .unwrap_or(Ok(Callback::Other))
            .unwrap_or(Callback::Other);
        match outcome {
            Callback::Code(code) => return Ok(code),
            Callback::Error(code) => return Err(token::refusal(&code)),
            Callback::StateMismatch => bail!(
                "refused a redirect whose state does not match this request (another sign-in, or a forged request): nothing was sealed; run authorize again"
            ),
            Callback::Other => {}
        }
    }
    bail!("{MAX_CONNECTIONS} connections to the redirect listener without the sign-in's redirect")
}

async fn respond(stream: &mut TcpStream, status: &str, text: &str) {
    let body = format!("<!DOCTYPE html><title>kubectl mailcred</title><p>{text}</p>\n");
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // Best effort: the outcome is decided by what was received, not by this write.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads one request head (bounded) and decides what it is.
async fn handle(mut stream: TcpStream, state: &str) -> anyhow::Result<Callback> {
    let mut head = Zeroizing::new(Vec::with_capacity(MAX_REQUEST_HEAD));
    let mut chunk = Zeroizing::new([0u8; 1024]);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk[..]).await?;
        if n == 0 || head.len() + n > MAX_REQUEST_HEAD {
            respond(&mut stream, "400 Bad Request", "Bad request.").await;
            return Ok(Callback::Other);
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let outcome = classify(&head, state);
    match &outcome {
        Callback::Code(_) => {
            respond(
                &mut stream,
                "200 OK",
                "Signed in. You can close this window; kubectl mailcred seals the grant.",
            )
            .await;
        }
        Callback::Error(_) => {
            respond(
                &mut stream,
                "200 OK",
                "The sign-in was not allowed. You can close this window.",
            )
            .await;
        }
        Callback::StateMismatch => {
            respond(
                &mut stream,
                "400 Bad Request",
                "This redirect does not belong to the running sign-in: refused.",
            )
            .await;
        }
        Callback::Other => respond(&mut stream, "404 Not Found", "Not found.").await,
    }
    Ok(outcome)
}

/// `GET /callback?code=...&state=... HTTP/1.1`: the request line decides.
fn classify(head: &[u8], state: &str) -> Callback {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Callback::Other;
    };
    let mut parts = line.split(' ');
    let (Some("GET"), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Callback::Other;
    };
    if !version.starts_with("HTTP/1.") {
        return Callback::Other;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != CALLBACK_PATH {
        return Callback::Other;
    }
    let mut got_state = None;
    let mut code = None;
    let mut error = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "state" if got_state.is_none() => got_state = Some(value.into_owned()),
            "code" if code.is_none() => code = Some(Zeroizing::new(value.into_owned())),
            "error" if error.is_none() => {
                error = Some(mailcred_oauth::reply::sanitize_code(&value));
            }
            // A repeated state, code or error is not a redirect we produced.
            "state" | "code" | "error" => return Callback::StateMismatch,
            _ => {}
        }
    }
    if got_state.as_deref() != Some(state) {
        return Callback::StateMismatch;
    }
    match (code, error) {
        (_, Some(error)) => Callback::Error(error),
        (Some(code), None) if !code.is_empty() => Callback::Code(code),
        _ => Callback::Error("invalid_request".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// S256 against an independent implementation (python3 hashlib + base64.urlsafe_b64encode).
    #[test]
    fn s256_challenge_matches_an_independent_implementation() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWXoLlFk"),
            "L6jqqC7xCPF1dOwNFb4t68m_wewxDXUBvi42Zxc6qaw"
        );
        let v = random_b64url(32).unwrap();
        assert_eq!(v.len(), 43);
        assert_ne!(*v, *random_b64url(32).unwrap());
    }

    fn req(target: &str) -> Vec<u8> {
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
    }

    #[test]
    fn only_the_matching_state_yields_the_code() {
        let code = |c: Callback| match c {
            Callback::Code(c) => Some(c.to_string()),
            _ => None,
        };
        assert_eq!(
            code(classify(&req("/callback?code=abc&state=S1"), "S1")).as_deref(),
            Some("abc")
        );
        assert!(matches!(
            classify(&req("/callback?code=abc&state=S2"), "S1"),
            Callback::StateMismatch
        ));
        assert!(matches!(
            classify(&req("/callback?code=abc"), "S1"),
            Callback::StateMismatch
        ));
        assert!(matches!(
            classify(&req("/callback?code=a&state=S1&state=S1"), "S1"),
            Callback::StateMismatch
        ));
        assert!(matches!(
            classify(&req("/callback?code=a&code=b&state=S1"), "S1"),
            Callback::StateMismatch
        ));
        assert!(matches!(
            classify(&req("/favicon.ico"), "S1"),
            Callback::Other
        ));
        assert!(matches!(
            classify(b"POST /callback?code=a&state=S1 HTTP/1.1\r\n\r\n", "S1"),
            Callback::Other
        ));
        let Callback::Error(e) = classify(&req("/callback?error=access_denied&state=S1"), "S1")
        else {
            panic!("error redirect")
        };
        assert_eq!(e, "access_denied");
        assert!(matches!(
            classify(&req("/callback?error=access_denied&state=X"), "S1"),
            Callback::StateMismatch
        ));
    }
}
