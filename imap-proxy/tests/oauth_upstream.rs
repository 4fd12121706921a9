//! AUTHENTICATE XOAUTH2 / OAUTHBEARER upstream (issue #12) against the scripted TLS server:
//! the exact SASL bytes with and without SASL-IR, the XOAUTH2 error continuation, one retry
//! with a fresh token, no LOGIN / AUTHENTICATE PLAIN fallback, `NO [UNAVAILABLE]` on token
//! trouble, no token in the application's bytes, and a BYE in mid-session that ends it cleanly.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::scripted::{self, Received, Script};
use common::*;
use mailcred_core::crd::{Policy, TlsMode};
use mailcred_core::credential::UsableCredential;
use mailcred_core::testkit::{StaticSource, StubTokens};
use mailcred_core::upstream_auth::{OAuthLogin, SaslMechanism};
use mailcred_core::{TokenError, UpstreamAuth};
use mailcred_imap::ImapProxyConfig;

const USER: &str = "app@example.test";

/// Every command line upstream received, in order.
type Log = Arc<Mutex<Vec<String>>>;

async fn proxy_for(
    caps: &str,
    mechanism: SaslMechanism,
    tokens: Arc<StubTokens>,
    script: Script,
) -> RunningProxy {
    let upstream = scripted::start(caps, script).await;
    let credential = Arc::new(UsableCredential {
        oauth: None,
        namespace: NS.into(),
        name: NAME.into(),
        username: USER.into(),
        smtp: None,
        imap: Some(endpoint(
            "localhost",
            upstream.port,
            TlsMode::Implicit,
            Some(upstream.ca_pem.clone()),
        )),
        policy: Policy {
            imap: policy(false, &["INBOX"]),
            ..Default::default()
        },
        sealed_fingerprint: "sha256:test".into(),
        auth: UpstreamAuth::OAuth(OAuthLogin { mechanism, tokens }),
    });
    start_proxy(
        ImapProxyConfig::default(),
        Arc::new(StaticSource::shared(credential)),
    )
    .await
}

/// A server that refuses the tokens in `refused` with the XOAUTH2 error continuation and
/// accepts any other; logs what it got.
fn server(log: Log, refused: &'static [&'static str]) -> Script {
    let pending: Arc<Mutex<Option<String>>> = Arc::default();
    Arc::new(move |r: &Received| {
        let raw = String::from_utf8_lossy(&r.raw).trim_end().to_owned();
        log.lock().unwrap().push(raw.clone());
        if let Some(tag) = pending.lock().unwrap().take() {
            // The answer to the error challenge.
            return format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
                .into_bytes();
        }
        match r.name.as_str() {
            "AUTHENTICATE" => {
                let words: Vec<&str> = raw.split(' ').collect();
                let Some(blob) = words.get(3) else {
                    return b"+ \r\n".to_vec();
                };
                let decoded = String::from_utf8(STANDARD.decode(blob).unwrap()).unwrap();
                if refused
                    .iter()
                    .any(|t| decoded.contains(&format!("Bearer {t}\x01")))
                {
                    *pending.lock().unwrap() = Some(r.tag.clone());
                    b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n".to_vec()
                } else {
                    format!("{} OK [CAPABILITY IMAP4rev1] Logged in\r\n", r.tag).into_bytes()
                }
            }
            "LOGIN" => format!("{} OK Logged in\r\n", r.tag).into_bytes(),
            // Without SASL-IR the response comes alone on its line.
            _ if r.tag.len() > 8 => {
                let decoded = String::from_utf8(STANDARD.decode(&r.tag).unwrap()).unwrap();
                if refused
                    .iter()
                    .any(|t| decoded.contains(&format!("Bearer {t}\x01")))
                {
                    *pending.lock().unwrap() = Some("m3".into());
                    b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n".to_vec()
                } else {
                    b"m3 OK [CAPABILITY IMAP4rev1] Logged in\r\n".to_vec()
                }
            }
            _ => scripted::ok(r),
        }
    })
}

fn decoded_blobs(log: &Log) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|l| {
            let blob = l.rsplit(' ').next()?;
            let bytes = STANDARD.decode(blob).ok()?;
            String::from_utf8(bytes)
                .ok()
                .filter(|s| s.contains("auth=Bearer"))
        })
        .collect()
}

#[tokio::test]
async fn authenticate_sends_the_exact_initial_response() {
    for caps in [
        "IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER",
        "IMAP4rev1 AUTH=XOAUTH2 AUTH=OAUTHBEARER",
    ] {
        for mechanism in [SaslMechanism::Xoauth2, SaslMechanism::Oauthbearer] {
            let log = Log::default();
            let tokens = Arc::new(StubTokens::new("tok"));
            let proxy = proxy_for(caps, mechanism, tokens.clone(), server(log.clone(), &[])).await;
            let mut c = Client::connect(proxy.addr).await;
            let answer = c.cmd("a1", "LOGIN app x").await;
            assert!(last(&answer).starts_with("a1 OK"), "{answer:?}");
            let lines = log.lock().unwrap().clone();
            let auth: Vec<&String> = lines
                .iter()
                .filter(|l| l.contains("AUTHENTICATE"))
                .collect();
            assert_eq!(auth.len(), 1, "{lines:?}");
            assert!(auth[0].starts_with(&format!("m3 AUTHENTICATE {}", mechanism.name())));
            assert!(
                !lines
                    .iter()
                    .any(|l| l.contains("LOGIN") || l.contains("PLAIN"))
            );
            let port = proxy_port(&lines);
            let blobs = decoded_blobs(&log);
            let expected = match mechanism {
                SaslMechanism::Xoauth2 => {
                    "user=app@example.test\x01auth=Bearer tok-1\x01\x01".to_owned()
                }
                SaslMechanism::Oauthbearer => format!(
                    "n,a=app@example.test,\x01host=localhost\x01port={port}\x01auth=Bearer tok-1\x01\x01"
                ),
            };
            assert_eq!(blobs, vec![expected], "{caps}");
            assert_eq!(tokens.fetches(), 1);
            proxy.stop().await;
        }
    }
}

/// The OAUTHBEARER blob names the port; the tests read it back from what was sent.
fn proxy_port(lines: &[String]) -> String {
    lines
        .iter()
        .filter_map(|l| STANDARD.decode(l.rsplit(' ').next()?).ok())
        .filter_map(|b| String::from_utf8(b).ok())
        .find_map(|s| {
            s.split("port=")
                .nth(1)
                .map(|p| p.split('\x01').next().unwrap_or("").to_owned())
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn refused_token_is_replaced_once() {
    let log = Log::default();
    let tokens = Arc::new(StubTokens::new("tok"));
    let caps = "IMAP4rev1 SASL-IR AUTH=XOAUTH2";
    let proxy = proxy_for(
        caps,
        SaslMechanism::Xoauth2,
        tokens.clone(),
        server(log.clone(), &["tok-1"]),
    )
    .await;
    let mut c = Client::connect(proxy.addr).await;
    let answer = c.cmd("a1", "LOGIN app x").await;
    assert!(last(&answer).starts_with("a1 OK"), "{answer:?}");
    assert_eq!((tokens.fetches(), tokens.rejections()), (2, 1));
    let lines = log.lock().unwrap().clone();
    // The error continuation was answered with an empty response.
    assert!(lines.iter().any(|l| l.is_empty()), "{lines:?}");
    assert_eq!(decoded_blobs(&log).len(), 2);
    proxy.stop().await;

    // Both refused: exactly two fetches, two AUTHENTICATEs, then NO [UNAVAILABLE].
    let log = Log::default();
    let tokens = Arc::new(StubTokens::new("tok"));
    let proxy = proxy_for(
        caps,
        SaslMechanism::Xoauth2,
        tokens.clone(),
        server(log.clone(), &["tok-1", "tok-2", "tok-3"]),
    )
    .await;
    let mut c = Client::connect(proxy.addr).await;
    let answer = c.cmd("a1", "LOGIN app x").await;
    assert!(
        last(&answer).starts_with("a1 NO [UNAVAILABLE]"),
        "{answer:?}"
    );
    assert_eq!(tokens.fetches(), 2);
    assert_eq!(decoded_blobs(&log).len(), 2);
    let app = String::from_utf8_lossy(&c.transcript).into_owned();
    assert!(!app.contains("tok-1") && !app.contains("tok-2"), "{app}");
    proxy.stop().await;
}

#[tokio::test]
async fn no_fallback_and_token_trouble_are_unavailable() {
    // The server offers only PLAIN and LOGIN: nothing is sent.
    let log = Log::default();
    let tokens = Arc::new(StubTokens::new("tok"));
    let proxy = proxy_for(
        "IMAP4rev1 SASL-IR AUTH=PLAIN",
        SaslMechanism::Xoauth2,
        tokens,
        server(log.clone(), &[]),
    )
    .await;
    let mut c = Client::connect(proxy.addr).await;
    let answer = c.cmd("a1", "LOGIN app x").await;
    assert!(
        last(&answer).starts_with("a1 NO [UNAVAILABLE]"),
        "{answer:?}"
    );
    assert!(
        !log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("LOGIN") || l.contains("AUTHENTICATE"))
    );
    proxy.stop().await;

    let log = Log::default();
    let tokens = Arc::new(StubTokens::failing(|| TokenError::Timeout {
        endpoint: "https://login.example.test/token".into(),
        seconds: 10,
    }));
    let proxy = proxy_for(
        "IMAP4rev1 SASL-IR AUTH=XOAUTH2",
        SaslMechanism::Xoauth2,
        tokens,
        server(log.clone(), &[]),
    )
    .await;
    let mut c = Client::connect(proxy.addr).await;
    let answer = c.cmd("a1", "LOGIN app x").await;
    assert!(
        last(&answer).starts_with("a1 NO [UNAVAILABLE]"),
        "{answer:?}"
    );
    assert!(last(&answer).contains("token_timeout"), "{answer:?}");
    proxy.stop().await;
}

/// A hostile server echoes the AUTHENTICATE line after login; a token expiring mid-session
/// ends in a BYE: the application sees the BYE and the session closes, never a hang.
#[tokio::test]
async fn echoes_are_scrubbed_and_mid_session_bye_ends_cleanly() {
    let sent: Arc<Mutex<String>> = Arc::default();
    let keep = sent.clone();
    let script: Script = Arc::new(move |r: &Received| {
        let raw = String::from_utf8_lossy(&r.raw).trim_end().to_owned();
        match r.name.as_str() {
            "AUTHENTICATE" => {
                *keep.lock().unwrap() = raw;
                format!("{} OK Logged in\r\n", r.tag).into_bytes()
            }
            "NOOP" => format!(
                "* OK you logged in with {}\r\n{} OK done\r\n",
                keep.lock().unwrap(),
                r.tag
            )
            .into_bytes(),
            "SELECT" => b"* BYE token expired\r\n".to_vec(),
            _ => scripted::ok(r),
        }
    });
    let tokens = Arc::new(StubTokens::new("secret-token"));
    let proxy = proxy_for(
        "IMAP4rev1 SASL-IR AUTH=XOAUTH2",
        SaslMechanism::Xoauth2,
        tokens,
        script,
    )
    .await;
    let mut c = Client::connect(proxy.addr).await;
    assert!(last(&c.cmd("a1", "LOGIN app x").await).starts_with("a1 OK"));
    let noop = c.cmd("a2", "NOOP").await;
    assert!(last(&noop).starts_with("a2 OK"), "{noop:?}");
    c.send(b"a3 SELECT INBOX\r\n").await;
    let mut saw_bye = false;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = c.line().await {
            saw_bye |= line.starts_with("* BYE");
        }
    })
    .await;
    assert!(ended.is_ok(), "the session hung after upstream's BYE");
    assert!(saw_bye, "the application got no BYE");
    let app = String::from_utf8_lossy(&c.transcript).into_owned();
    let blob = sent
        .lock()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(blob.len() > 8);
    assert!(!app.contains("secret-token-1"), "{app}");
    assert!(!app.contains(&blob), "{app}");
    proxy.stop().await;
}
