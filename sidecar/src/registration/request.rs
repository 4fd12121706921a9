//! `POST /v1/accounts`: the body parsed and checked, each refusal naming its field and the
//! fix. Everything the sidecar would later refuse or fail to match is refused here, before
//! the login check: plaintext upstream, a caPem that is no CA, a policy pattern that
//! `mailcred_core::policy` (the relay's and the proxy's one parser) does not take.
//!
//! The password is taken out of the parsed document first and only ever moves into a
//! [`MailPassword`]; no message here is built from it.

use std::net::IpAddr;
use std::time::Duration;

use mailcred_core::MailPassword;
use mailcred_core::crd::{Policy, TlsMode, UpstreamEndpoint};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::errors::{ApiError, Code};
use super::fields::check_known;
use super::policy_check::check_policy;

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest password (bytes of UTF-8).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest username (the CRD's bound).
pub const MAX_USERNAME_CHARS: usize = 320;
pub const MIN_LIFETIME_SECONDS: u64 = 60;
/// 30 days.
pub const MAX_LIFETIME_SECONDS: u64 = 2_592_000;

/// A registration that passed every check.
pub struct Registration {
    pub name: Option<String>,
    pub username: String,
    pub password: MailPassword,
    pub smtp: Option<UpstreamEndpoint>,
    pub imap: Option<UpstreamEndpoint>,
    pub policy: Policy,
    pub lifetime: Option<Duration>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// Parses and checks a request body (at most [`MAX_BODY_BYTES`]).
pub fn parse(body: &[u8]) -> Result<Registration, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        // serde_json's syntax errors give a position, never the input's text.
        ApiError::new(
            Code::MalformedJson,
            format!("the body is not valid JSON: {e}"),
            "send one JSON object (Content-Type: application/json)",
        )
    })?;
    let Value::Object(mut root) = value else {
        return Err(ApiError::new(
            Code::MalformedJson,
            "the body must be a JSON object",
            "send one JSON object, e.g. {\"username\": ..., \"password\": ..., \"imap\": {...}}",
        ));
    };
    check_known(&root)?;
    let password = take_password(&mut root)?;
    let username = username(root.get("username"))?;
    let name = match root.get("name") {
        None | Some(Value::Null) => None,
        Some(v) => Some(name(v)?),
    };
    let smtp = endpoint(&root, "smtp")?;
    let imap = endpoint(&root, "imap")?;
    if smtp.is_none() && imap.is_none() {
        return Err(ApiError::new(
            Code::NoEndpoint,
            "neither smtp nor imap is given",
            "give the account's smtp and/or imap server: {\"host\", \"port\", \"tls\"}",
        ));
    }
    let policy = match root.get("policy") {
        None | Some(Value::Null) => Policy::default(),
        Some(v) => policy(v)?,
    };
    let lifetime = match root.get("lifetimeSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(lifetime(v)?),
    };
    Ok(Registration {
        name,
        username,
        password,
        smtp,
        imap,
        policy,
        lifetime,
    })
}

pub fn too_large() -> ApiError {
    ApiError::new(
        Code::BodyTooLarge,
        format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        "a registration is a small JSON object: check what is sent (a caPem bundle is the only large field)",
    )
}

fn missing(field: &str, what: &str) -> ApiError {
    ApiError::new(
        Code::MissingField,
        format!("{field} is missing"),
        format!("give {field}: {what}"),
    )
    .at(field)
}

fn take_password(root: &mut Map<String, Value>) -> Result<MailPassword, ApiError> {
    let text = match root.remove("password") {
        None | Some(Value::Null) => {
            return Err(missing(
                "password",
                "the mailbox password, as the user typed it",
            ));
        }
        Some(Value::String(s)) => Zeroizing::new(s),
        Some(_) => {
            return Err(ApiError::new(
                Code::InvalidField,
                "password must be a JSON string",
                "send the password as a string",
            )
            .at("password"));
        }
    };
    if text.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::new(
            Code::PasswordTooLong,
            format!("the password is longer than {MAX_PASSWORD_BYTES} bytes"),
            "check that the password field holds only the password",
        )
        .at("password"));
    }
    // MailPassword's refusals describe the problem, never the password.
    MailPassword::new(text.as_str().to_owned()).map_err(|e| {
        ApiError::new(
            Code::InvalidPassword,
            e.to_string(),
            "send the password exactly as typed, without NUL or line breaks",
        )
        .at("password")
    })
}

fn username(value: Option<&Value>) -> Result<String, ApiError> {
    let bad = |m: &str| {
        ApiError::new(
            Code::InvalidField,
            format!("username {m}"),
            "give the account's login name (often its email address)",
        )
        .at("username")
    };
    match value {
        None | Some(Value::Null) => Err(missing("username", "the account's login name")),
        Some(Value::String(s)) if s.is_empty() => Err(bad("is empty")),
        Some(Value::String(s)) if s.chars().count() > MAX_USERNAME_CHARS => Err(bad(&format!(
            "is longer than {MAX_USERNAME_CHARS} characters"
        ))),
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err(bad("contains control characters"))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad("must be a JSON string")),
    }
}

fn name(value: &Value) -> Result<String, ApiError> {
    match value {
        Value::String(s) if mailcred_core::names::is_dns_subdomain(s) => Ok(s.clone()),
        _ => Err(ApiError::new(
            Code::InvalidName,
            "name is not a valid MailCredential name",
            "use lowercase letters, digits, '-' and '.' (at most 253, starting and ending with a letter or digit), or leave name out for a generated one",
        )
        .at("name")),
    }
}

fn endpoint(root: &Map<String, Value>, kind: &str) -> Result<Option<UpstreamEndpoint>, ApiError> {
    let Some(Value::Object(e)) = root.get(kind) else {
        return Ok(None);
    };
    let field = |f: &str| format!("{kind}.{f}");
    let host = match e.get("host") {
        None | Some(Value::Null) => return Err(missing(&field("host"), "the server's DNS name")),
        Some(Value::String(h)) if valid_host(h) => h.clone(),
        Some(_) => {
            return Err(ApiError::new(
                Code::InvalidHost,
                format!("{} is not a DNS name or IP address", field("host")),
                "give the bare host name (mail.example.com), without scheme, port, path or spaces",
            )
            .at(field("host")));
        }
    };
    let port = match e.get("port") {
        None | Some(Value::Null) => {
            return Err(missing(
                &field("port"),
                "the port (465/587 SMTP, 993/143 IMAP)",
            ));
        }
        Some(v) => match v.as_u64().and_then(|p| u16::try_from(p).ok()) {
            Some(p) if p > 0 => p,
            _ => {
                return Err(ApiError::new(
                    Code::InvalidPort,
                    format!("{} must be an integer from 1 to 65535", field("port")),
                    "SMTP: 465 (implicit TLS) or 587 (STARTTLS); IMAP: 993 or 143",
                )
                .at(field("port")));
            }
        },
    };
    let tls = match e.get("tls").and_then(Value::as_str) {
        Some("implicit") => TlsMode::Implicit,
        Some("starttls") => TlsMode::Starttls,
        None if matches!(e.get("tls"), None | Some(Value::Null)) => {
            return Err(missing(&field("tls"), "\"implicit\" or \"starttls\""));
        }
        _ => {
            return Err(ApiError::new(
                Code::InvalidTls,
                format!("{} must be \"implicit\" or \"starttls\"", field("tls")),
                "plaintext upstream (tls: none) is not offered through the registration API; use the server's TLS port",
            )
            .at(field("tls")));
        }
    };
    let ca_pem = match e.get("caPem") {
        None | Some(Value::Null) => None,
        Some(Value::String(pem)) => {
            // The one trust builder (mailcred_core::tls) decides: what passes here works there.
            mailcred_core::tls::ca_certificates(pem).map_err(|err| {
                ApiError::new(Code::InvalidCaPem, err.to_string(), "give the CA certificate(s) in PEM form, or leave caPem out for the system roots")
                    .at(field("caPem"))
            })?;
            Some(pem.clone())
        }
        Some(_) => {
            return Err(ApiError::new(
                Code::InvalidCaPem,
                format!("{} must be a PEM string", field("caPem")),
                "give the CA certificate(s) in PEM form",
            )
            .at(field("caPem")));
        }
    };
    Ok(Some(UpstreamEndpoint {
        host,
        port,
        tls,
        ca_pem,
        insecure: false,
        insecure_reason: None,
    }))
}

/// A DNS name (letters, digits, '-', dot-separated labels of 1 to 63) or an IP address.
fn valid_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn lifetime(value: &Value) -> Result<Duration, ApiError> {
    match value.as_u64() {
        Some(s) if (MIN_LIFETIME_SECONDS..=MAX_LIFETIME_SECONDS).contains(&s) => {
            Ok(Duration::from_secs(s))
        }
        _ => Err(ApiError::new(
            Code::InvalidLifetime,
            format!("lifetimeSeconds must be an integer from {MIN_LIFETIME_SECONDS} to {MAX_LIFETIME_SECONDS} (30 days)"),
            "give the session's length in seconds, or leave lifetimeSeconds out for an account that lasts until deleted",
        )
        .at("lifetimeSeconds")),
    }
}

fn policy(value: &Value) -> Result<Policy, ApiError> {
    let policy: Policy = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::new(
            Code::InvalidPolicy,
            format!("policy.{path}: {}", e.inner()),
            "write the policy as the MailCredential's spec.policy (camelCase, docs/policy.md)",
        )
        .at(format!("policy.{path}"))
    })?;
    check_policy(&policy)?;
    Ok(policy)
}
