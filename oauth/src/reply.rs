//! Token endpoint replies (RFC 6749 §5.1, §5.2) into secrets and bounded, secret-free errors.

use std::time::Duration;

use mailcred_core::TokenError;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::Reply;

/// `expires_in` absent: assume a short life (RFC 6749 leaves it to the server's docs); a
/// token that dies earlier is refused upstream and `rejected` fetches a new one.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Lower bound: `expires_in: 0` (or 1) would otherwise mean one request per login.
pub const MIN_LIFETIME: Duration = Duration::from_secs(30);
/// Upper bound: a huge `expires_in` neither overflows `Instant` nor keeps a token for days.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Longest OAuth error code kept (the real ones are under 30 characters).
const MAX_CODE: usize = 64;

/// A successful reply.
pub struct Issued {
    pub access_token: SecretString,
    pub lifetime: Duration,
    /// A rotated refresh token, when the server sent one.
    pub refresh_token: Option<SecretString>,
}

#[derive(Deserialize)]
struct Success {
    access_token: SecretString,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<Seconds>,
    #[serde(default)]
    refresh_token: Option<SecretString>,
}

/// `expires_in` as a number, or a string of one (older Entra v1 replies).
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Deserialize)]
struct Failure {
    error: String,
}

/// The lifetime `expires_in` gives, clamped to [`MIN_LIFETIME`, `MAX_LIFETIME`].
fn lifetime(expires_in: Option<&Seconds>) -> Result<Duration, &'static str> {
    let secs = match expires_in {
        None => return Ok(DEFAULT_LIFETIME),
        Some(Seconds::Int(n)) => *n,
        Some(Seconds::Float(f)) if f.is_finite() => *f as i64,
        Some(Seconds::Float(_)) => return Err("expires_in is not a number"),
        Some(Seconds::Text(t)) => t
            .trim()
            .parse::<i64>()
            .map_err(|_| "expires_in is not a number")?,
    };
    let secs = u64::try_from(secs).unwrap_or(0);
    Ok(Duration::from_secs(secs).clamp(MIN_LIFETIME, MAX_LIFETIME))
}

/// RFC 6750 §2.1 b64token: what a bearer token may contain. Anything else (a space, `^A`)
/// would break or inject into the SASL initial response.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// An RFC 6749 §5.2 error code reduced to its allowed characters (%x20-21 / %x23-5B /
/// %x5D-7E) and bounded: it goes into errors and logs.
pub fn sanitize_code(code: &str) -> String {
    let kept: String = code
        .chars()
        .filter(|c| matches!(*c as u32, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        .take(MAX_CODE)
        .collect();
    if kept.trim().is_empty() {
        "unnamed_error".to_string()
    } else {
        kept
    }
}

/// What to do about a refusal, by code.
fn hint(code: &str) -> &'static str {
    match code {
        "invalid_grant" => {
            "the sealed grant was revoked or expired (or a rotated refresh token was reused): authorize again (kubectl mailcred authorize) and re-seal"
        }
        "invalid_client" => {
            "the token endpoint does not accept the client: check spec.oauth.clientId, clientAuth and the sealed client secret or key"
        }
        "unauthorized_client" => {
            "the client may not use this grant: enable it for the application at the provider"
        }
        "invalid_scope" => "check spec.oauth.scopes against what the application may request",
        "unsupported_grant_type" => "the token endpoint does not support spec.oauth.grant",
        _ => "check spec.oauth and the provider's application settings",
    }
}

/// The serde error without its text: messages can quote values of the reply (tokens).
fn shape_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not JSON",
        serde_json::error::Category::Data => "JSON without a string access_token",
        serde_json::error::Category::Io => "unreadable",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// Turns a reply into a token or the error that names why not.
pub fn parse(endpoint: &str, reply: &Reply) -> Result<Issued, TokenError> {
    let malformed = |reason: String| TokenError::Malformed {
        endpoint: endpoint.to_string(),
        reason,
    };
    if reply.status == 200 {
        let ok: Success =
            serde_json::from_slice(&reply.body).map_err(|e| malformed(shape_error(&e)))?;
        if let Some(kind) = &ok.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(malformed(format!(
                "token_type {:?} is not Bearer",
                sanitize_code(kind)
            )));
        }
        if !is_b64token(ok.access_token.expose_secret()) {
            return Err(malformed(
                "access_token is empty or has characters a bearer token may not have".into(),
            ));
        }
        let lifetime = lifetime(ok.expires_in.as_ref()).map_err(|r| malformed(r.into()))?;
        let refresh_token = ok.refresh_token.filter(|r| !r.expose_secret().is_empty());
        return Ok(Issued {
            access_token: ok.access_token,
            lifetime,
            refresh_token,
        });
    }
    if matches!(reply.status, 400 | 401)
        && let Ok(failure) = serde_json::from_slice::<Failure>(&reply.body)
    {
        let code = sanitize_code(&failure.error);
        return Err(TokenError::Refused {
            endpoint: endpoint.to_string(),
            hint: hint(&code),
            code,
        });
    }
    Err(TokenError::HttpStatus {
        endpoint: endpoint.to_string(),
        status: reply.status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply::new(status, body.as_bytes())
    }

    #[test]
    fn lifetimes_are_clamped() {
        let life = |b: &str| parse("e", &reply(200, b)).map(|i| i.lifetime.as_secs());
        assert_eq!(life(r#"{"access_token":"a"}"#).unwrap(), 300);
        assert_eq!(life(r#"{"access_token":"a","expires_in":0}"#).unwrap(), 30);
        assert_eq!(life(r#"{"access_token":"a","expires_in":-5}"#).unwrap(), 30);
        assert_eq!(
            life(r#"{"access_token":"a","expires_in":"3599"}"#).unwrap(),
            3599
        );
        assert_eq!(
            life(r#"{"access_token":"a","expires_in":18446744073709551615}"#).unwrap(),
            86400
        );
        assert_eq!(
            life(r#"{"access_token":"a","expires_in":1e300}"#).unwrap(),
            86400
        );
        assert!(life(r#"{"access_token":"a","expires_in":"soon"}"#).is_err());
    }

    #[test]
    fn refusals_keep_only_a_bounded_clean_code() {
        let long = "x".repeat(500);
        let body = format!(
            r#"{{"error":"inv\"alid\u0001_grant\\{long}","error_description":"secret-ish"}}"#
        );
        let err = parse("e", &reply(400, &body)).err().unwrap();
        let TokenError::Refused { code, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(code.starts_with("invalid_grant"));
        assert_eq!(code.len(), MAX_CODE);
        assert!(!err.to_string().contains("secret-ish"));
    }

    #[test]
    fn errors_never_quote_the_reply() {
        let body = r#"{"access_token":"tok en-SECRET","expires_in":5}"#;
        let err = parse("e", &reply(200, body)).err().unwrap();
        assert!(!format!("{err} {err:?}").contains("SECRET"));
        let body = r#"{"access_token":["SECRET"]}"#;
        let err = parse("e", &reply(200, body)).err().unwrap();
        assert!(!format!("{err} {err:?}").contains("SECRET"), "{err}");
        let err = parse(
            "e",
            &reply(200, r#"{"access_token":"a","token_type":"mac"}"#),
        );
        assert!(err.is_err());
        assert!(matches!(
            parse("e", &reply(500, "{}")),
            Err(TokenError::HttpStatus { status: 500, .. })
        ));
        assert!(matches!(
            parse("e", &reply(400, "<html>")),
            Err(TokenError::HttpStatus { status: 400, .. })
        ));
    }
}
