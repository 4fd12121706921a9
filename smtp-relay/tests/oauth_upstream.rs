//! AUTH XOAUTH2 / OAUTHBEARER upstream (issue #12) against the scripted TLS server: the exact
//! SASL bytes, one retry with a fresh token (never more), no fallback to a password
//! mechanism, 454 on token-endpoint trouble, pooled connections that keep their
//! authentication, and no token in anything the application or the logs get.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mailcred_core::crd::{Policy, SmtpPolicy, TlsMode, UpstreamEndpoint};
use mailcred_core::credential::{CredentialSource, UsableCredential};
use mailcred_core::testkit::{CapturedLogs, LogFormat, StubTokens};
use mailcred_core::upstream_auth::{OAuthLogin, SaslMechanism};
use mailcred_core::{Error, TokenError, UpstreamAuth};
use mailcred_smtp::{RelayConfig, RelayMetrics, SmtpRelay};
use support::app::Client;
use support::scripted::{Script, Scripted};
use tokio_util::sync::CancellationToken;

const USER: &str = "app@example.test";
const MESSAGE: &str = "From: <app@example.test>\r\nSubject: t\r\n\r\nhello\r\n.\r\n";

struct Source(Arc<UsableCredential>);

#[async_trait]
impl CredentialSource for Source {
    async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
        Ok(self.0.clone())
    }
}

struct Relay {
    addr: std::net::SocketAddr,
    upstream: Scripted,
    tokens: Arc<StubTokens>,
    logs: CapturedLogs,
    _stop: tokio_util::sync::DropGuard,
}

impl Relay {
    /// AUTH lines (and answers to AUTH challenges) upstream received, over all connections.
    fn auth_lines(&self) -> Vec<String> {
        let seen = self.upstream.seen.lock().unwrap();
        seen.connections
            .iter()
            .flatten()
            .filter(|l| l.starts_with("AUTH") || l.is_empty() || *l == "AQ==")
            .cloned()
            .collect()
    }

    fn logs(&self) -> String {
        self.logs.text()
    }

    fn assert_no_token(&self, text: &str) {
        for n in 1..=3 {
            let token = self.tokens.token(n);
            assert!(!text.contains(&token), "token {n} leaked: {text}");
            for line in self.auth_lines() {
                if let Some(blob) = line.rsplit(' ').next().filter(|b| b.len() > 8) {
                    assert!(!text.contains(blob), "the SASL blob leaked: {text}");
                }
            }
        }
    }
}

async fn start(script: Script, mechanism: SaslMechanism, tokens: StubTokens) -> Relay {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Everything the relay logs, at every level, as text.
    let logs = CapturedLogs::with_format(LogFormat::Text);
    let upstream = Scripted::start(script).await;
    let tokens = Arc::new(tokens);
    let credential = Arc::new(UsableCredential {
        oauth: None,
        namespace: "ns".into(),
        name: "mail".into(),
        username: USER.into(),
        smtp: Some(UpstreamEndpoint {
            host: "localhost".into(),
            port: upstream.port,
            tls: TlsMode::Starttls,
            ca_pem: Some(upstream.ca_pem.clone()),
            insecure: false,
            insecure_reason: None,
        }),
        imap: None,
        policy: Policy {
            smtp: SmtpPolicy {
                allowed_recipients: vec!["*".into()],
                ..Default::default()
            },
            ..Default::default()
        },
        sealed_fingerprint: "sha256:test".into(),
        auth: UpstreamAuth::OAuth(OAuthLogin {
            mechanism,
            tokens: tokens.clone(),
        }),
    });
    let relay = SmtpRelay::new(
        RelayConfig::default(),
        Arc::new(Source(credential)),
        RelayMetrics::unregistered(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(relay.serve(listener, stop.clone()));
    Relay {
        addr,
        upstream,
        tokens,
        logs,
        _stop: stop.drop_guard(),
    }
}

/// One message from the application; returns the replies to MAIL and to the data.
async fn send(relay: &Relay) -> (String, Option<String>) {
    let mut c = Client::connect(relay.addr).await;
    assert!(c.cmd("EHLO app.local").await.starts_with("250"));
    let mail = c.cmd("MAIL FROM:<app@example.test>").await;
    if !mail.starts_with("250") {
        return (mail, None);
    }
    assert!(c.cmd("RCPT TO:<to@example.test>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(MESSAGE.as_bytes()).await;
    let done = c.reply().await;
    c.cmd("QUIT").await;
    (mail, Some(done))
}

fn decoded(line: &str) -> String {
    let blob = line.rsplit(' ').next().unwrap();
    String::from_utf8(STANDARD.decode(blob).unwrap()).unwrap()
}

#[tokio::test]
async fn xoauth2_and_oauthbearer_send_the_exact_initial_response() {
    for mechanism in [SaslMechanism::Xoauth2, SaslMechanism::Oauthbearer] {
        let script = Script {
            auth_mechanisms: "PLAIN LOGIN XOAUTH2 OAUTHBEARER",
            ..Default::default()
        };
        let relay = start(script, mechanism, StubTokens::new("tok")).await;
        let (_, done) = send(&relay).await;
        assert!(done.unwrap().starts_with("250"));
        let auth = relay.auth_lines();
        assert_eq!(auth.len(), 1, "{auth:?}");
        let port = relay.upstream.port;
        let expected = match mechanism {
            SaslMechanism::Xoauth2 => "user=app@example.test\x01auth=Bearer tok-1\x01\x01".into(),
            SaslMechanism::Oauthbearer => format!(
                "n,a=app@example.test,\x01host=localhost\x01port={port}\x01auth=Bearer tok-1\x01\x01"
            ),
        };
        assert!(auth[0].starts_with(&format!("AUTH {} ", mechanism.name())));
        assert_eq!(decoded(&auth[0]), expected);
        assert_eq!(relay.upstream.seen.lock().unwrap().messages.len(), 1);
    }
}

#[tokio::test]
async fn pooled_connection_keeps_its_authentication() {
    let script = Script {
        auth_mechanisms: "XOAUTH2",
        ..Default::default()
    };
    let relay = start(script, SaslMechanism::Xoauth2, StubTokens::new("tok")).await;
    for _ in 0..3 {
        assert!(send(&relay).await.1.unwrap().starts_with("250"));
    }
    assert_eq!(relay.upstream.seen.lock().unwrap().messages.len(), 3);
    assert_eq!(relay.auth_lines().len(), 1, "one AUTH for three messages");
    assert_eq!(relay.tokens.fetches(), 1, "no token fetch per message");
}

#[tokio::test]
async fn a_refused_token_is_replaced_once_then_delivered() {
    for mechanism in [SaslMechanism::Xoauth2, SaslMechanism::Oauthbearer] {
        let script = Script {
            auth_mechanisms: "XOAUTH2 OAUTHBEARER",
            refused_tokens: vec!["tok-1".into()],
            ..Default::default()
        };
        let relay = start(script, mechanism, StubTokens::new("tok")).await;
        let (_, done) = send(&relay).await;
        assert!(done.unwrap().starts_with("250"));
        assert_eq!((relay.tokens.fetches(), relay.tokens.rejections()), (2, 1));
        let auth = relay.auth_lines();
        // AUTH with tok-1, the answer to the error challenge, AUTH with tok-2.
        let ack = match mechanism {
            SaslMechanism::Xoauth2 => "",
            SaslMechanism::Oauthbearer => "AQ==",
        };
        assert_eq!(auth.len(), 3, "{auth:?}");
        assert_eq!(auth[1], ack);
        assert!(decoded(&auth[2]).contains("auth=Bearer tok-2\x01"));
        // A new connection for the retry.
        assert_eq!(relay.upstream.seen.lock().unwrap().connections.len(), 2);
    }
}

#[tokio::test]
async fn two_refused_tokens_give_up_with_454() {
    let script = Script {
        auth_mechanisms: "XOAUTH2",
        refused_tokens: vec!["tok-1".into(), "tok-2".into(), "tok-3".into()],
        ..Default::default()
    };
    let relay = start(script, SaslMechanism::Xoauth2, StubTokens::new("tok")).await;
    let (mail, _) = send(&relay).await;
    assert!(mail.starts_with("454 4.7.0"), "{mail}");
    assert!(mail.contains("OAuth access token"), "{mail}");
    assert_eq!(relay.tokens.fetches(), 2, "exactly two token fetches");
    let attempts = relay
        .auth_lines()
        .iter()
        .filter(|l| l.starts_with("AUTH"))
        .count();
    assert_eq!(attempts, 2, "exactly two AUTH attempts, then give up");
    relay.assert_no_token(&mail);
    relay.assert_no_token(&relay.logs());
}

#[tokio::test]
async fn no_fallback_to_a_password_mechanism() {
    let script = Script {
        auth_mechanisms: "PLAIN LOGIN",
        ..Default::default()
    };
    let relay = start(script, SaslMechanism::Xoauth2, StubTokens::new("tok")).await;
    let (mail, _) = send(&relay).await;
    assert!(mail.starts_with("454 4.7.0"), "{mail}");
    assert!(relay.auth_lines().is_empty(), "{:?}", relay.auth_lines());
    assert!(relay.logs().contains("does not offer AUTH XOAUTH2"));
}

#[tokio::test]
async fn token_endpoint_trouble_is_454_with_the_oauth_code() {
    let relay = start(
        Script {
            auth_mechanisms: "XOAUTH2",
            ..Default::default()
        },
        SaslMechanism::Xoauth2,
        StubTokens::failing(|| TokenError::Refused {
            endpoint: "https://login.example.test/token".into(),
            code: "invalid_grant".into(),
            hint: "re-authorize",
        }),
    )
    .await;
    let (mail, _) = send(&relay).await;
    assert!(mail.starts_with("454 4.7.0"), "{mail}");
    assert!(mail.contains("token_invalid_grant"), "{mail}");
    let logs = relay.logs();
    assert!(
        logs.contains("invalid_grant"),
        "the log names the code: {logs}"
    );
    assert!(relay.auth_lines().is_empty());
    assert!(relay.upstream.seen.lock().unwrap().connections.is_empty());
}

/// A hostile upstream echoes the AUTH line in its refusal and in every RCPT reply: neither
/// the token nor the base64 blob reaches the application or the logs.
#[tokio::test]
async fn echoed_token_never_reaches_the_app() {
    let relay = start(
        Script {
            auth_mechanisms: "XOAUTH2",
            echo_auth: true,
            ..Default::default()
        },
        SaslMechanism::Xoauth2,
        StubTokens::new("tok"),
    )
    .await;
    let (mail, _) = send(&relay).await;
    assert!(mail.starts_with("454 4.7.0"), "{mail}");
    relay.assert_no_token(&mail);
    relay.assert_no_token(&relay.logs());

    let relay = start(
        Script {
            auth_mechanisms: "XOAUTH2",
            echo_auth_in_rcpt: true,
            ..Default::default()
        },
        SaslMechanism::Xoauth2,
        StubTokens::new("tok"),
    )
    .await;
    let mut c = Client::connect(relay.addr).await;
    c.cmd("EHLO app.local").await;
    assert!(
        c.cmd("MAIL FROM:<app@example.test>")
            .await
            .starts_with("250")
    );
    let rcpt = c.cmd("RCPT TO:<to@example.test>").await;
    assert!(rcpt.starts_with("550"), "{rcpt}");
    assert!(rcpt.contains("[redacted]"), "{rcpt}");
    relay.assert_no_token(&rcpt);
    relay.assert_no_token(&relay.logs());
}
