//! RFC 8628 device authorization grant: ask for a device code, show the person where to enter
//! the user code (stderr), poll the token endpoint at the server's interval (slower after
//! `slow_down`) until the sign-in, a refusal, the code's expiry or `--timeout`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mailcred_core::TokenError;
use mailcred_oauth::http::Reply;
use mailcred_oauth::reply;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::endpoints::Endpoints;
use super::token::{self, Client, Outcome};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8628 §3.2: 5 s when the server names no interval; §3.5: `slow_down` adds 5 s.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// What is shown on the terminal is bounded and printable (no escape sequences).
const MAX_USER_CODE: usize = 64;
const MAX_URI: usize = 2048;

#[derive(Deserialize)]
struct Start {
    device_code: SecretString,
    user_code: String,
    /// RFC 8628 name; Google's is `verification_url`.
    #[serde(alias = "verification_url")]
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    interval: Option<u64>,
}

fn printable(what: &str, value: &str, max: usize) -> anyhow::Result<()> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "the device authorization reply has an unusable {what} (empty, over {max} characters or not printable)"
        );
    }
    Ok(())
}

fn is_web_uri(value: &str) -> bool {
    value.starts_with("https://") || value.starts_with("http://")
}

fn parse_start(endpoint: &str, reply: &Reply) -> anyhow::Result<Start> {
    if reply.status != 200 {
        return Err(match reply::parse(endpoint, reply) {
            Err(TokenError::Refused { code, .. }) => token::refusal(&code),
            Err(e) => e.into(),
            Ok(_) => anyhow::anyhow!(
                "the device authorization endpoint {endpoint} answered HTTP {} with a token",
                reply.status
            ),
        });
    }
    // serde's message could quote the reply (the device code): only its position is kept.
    let start: Start = serde_json::from_slice(&reply.body).map_err(|e| {
        anyhow::anyhow!(
            "the device authorization endpoint {endpoint} sent a malformed reply (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    printable("user_code", &start.user_code, MAX_USER_CODE)?;
    printable("verification_uri", &start.verification_uri, MAX_URI)?;
    if !is_web_uri(&start.verification_uri) {
        bail!("the device authorization reply's verification_uri is not an http(s) URL");
    }
    if let Some(complete) = &start.verification_uri_complete {
        printable("verification_uri_complete", complete, MAX_URI)?;
    }
    if start.device_code.expose_secret().is_empty() {
        bail!("the device authorization reply has an empty device_code");
    }
    Ok(start)
}

pub async fn run(
    client: &Client,
    endpoints: &Endpoints,
    timeout: Duration,
) -> anyhow::Result<SecretString> {
    let device = endpoints
        .device
        .as_ref()
        .context("no device authorization endpoint")?;
    let scope = client.scope();
    let mut fields = Vec::new();
    if !scope.is_empty() {
        fields.push(("scope", scope.as_str()));
    }
    let reply = client.post(device, &fields).await?;
    let start = parse_start(&device.url, &reply)?;
    drop(reply);
    let lifetime = start.expires_in.map_or(timeout, Duration::from_secs);
    let wait = timeout.min(lifetime);
    eprintln!(
        "To sign in, open {} and enter the code {}",
        start.verification_uri, start.user_code
    );
    if let Some(complete) = start
        .verification_uri_complete
        .as_deref()
        .filter(|c| is_web_uri(c))
    {
        eprintln!("(or open {complete})");
    }
    eprintln!("waiting up to {} s for the sign-in ...", wait.as_secs());
    let deadline = Instant::now() + wait;
    let mut interval = start
        .interval
        .map_or(DEFAULT_INTERVAL, Duration::from_secs)
        .clamp(Duration::from_secs(1), MAX_INTERVAL);
    loop {
        let now = Instant::now();
        if now + interval > deadline {
            tokio::time::sleep_until(deadline.into()).await;
            bail!(
                "no sign-in within {} s (--timeout or the code's lifetime): nothing was sealed; run authorize again",
                wait.as_secs()
            );
        }
        tokio::time::sleep(interval).await;
        let fields = [
            ("grant_type", DEVICE_GRANT),
            ("device_code", start.device_code.expose_secret()),
        ];
        match client.exchange(&fields).await? {
            Outcome::RefreshToken(token) => return Ok(token),
            Outcome::Refused(code) if code == "authorization_pending" => {}
            Outcome::Refused(code) if code == "slow_down" => {
                interval = (interval + SLOW_DOWN_STEP).min(MAX_INTERVAL);
            }
            Outcome::Refused(code) => return Err(token::refusal(&code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply::new(status, body.as_bytes())
    }

    #[test]
    fn starts_are_checked_before_anything_is_printed() {
        let ok = r#"{"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"https://x/device","expires_in":600}"#;
        assert_eq!(
            parse_start("e", &reply(200, ok)).unwrap().user_code,
            "ABCD-EFGH"
        );
        let google = r#"{"device_code":"dc","user_code":"A","verification_url":"https://www.google.com/device"}"#;
        assert!(parse_start("e", &reply(200, google)).is_ok());
        for bad in [
            r#"{"device_code":"dc","user_code":"A\u001b[2J","verification_uri":"https://x"}"#,
            r#"{"device_code":"dc","user_code":"A B","verification_uri":"https://x"}"#,
            r#"{"device_code":"dc","user_code":"A","verification_uri":"javascript:alert(1)"}"#,
            r#"{"device_code":"","user_code":"A","verification_uri":"https://x"}"#,
            r#"{"user_code":"A","verification_uri":"https://x"}"#,
        ] {
            assert!(parse_start("e", &reply(200, bad)).is_err(), "{bad}");
        }
        let long = format!(
            r#"{{"device_code":"dc","user_code":"{}","verification_uri":"https://x"}}"#,
            "A".repeat(65)
        );
        assert!(parse_start("e", &reply(200, &long)).is_err());
    }

    #[test]
    fn malformed_starts_do_not_quote_the_device_code() {
        let body = r#"{"device_code":"SECRET-DC","user_code":5}"#;
        let err = parse_start("e", &reply(200, body))
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("SECRET-DC"), "{err}");
        let err = parse_start("e", &reply(400, r#"{"error":"invalid_client"}"#))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid_client"), "{err}");
    }
}
