//! The relay against a hostile or broken upstream (a scripted server speaking real TLS with
//! a test CA): pre-TLS injection, echoed secrets, replies that must never become 250, and
//! per-recipient verdicts. Issue #10 items 3, 5 and 11.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mailcred_core::crd::{Policy, SmtpPolicy, TlsMode, UpstreamEndpoint};
use mailcred_core::credential::{CredentialSource, UsableCredential};
use mailcred_core::testkit::{CapturedLogs, LogFormat};
use mailcred_core::{Error, MailPassword, UpstreamAuth};
use mailcred_smtp::{RelayConfig, RelayMetrics, SmtpRelay};
use support::app::Client;
use support::scripted::{Script, Scripted};
use tokio_util::sync::CancellationToken;

const USER: &str = "app@example.test";
const PASSWORD: &str = "Upstream-s3cret-pw";

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
    logs: CapturedLogs,
    _stop: tokio_util::sync::DropGuard,
}

async fn start(script: Script) -> Relay {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Everything the relay logs, at every level, as text.
    let logs = CapturedLogs::with_format(LogFormat::Text);
    let implicit = script.implicit_tls;
    let upstream = Scripted::start(script).await;
    let credential = Arc::new(UsableCredential {
        namespace: "ns".into(),
        name: "mail".into(),
        username: USER.into(),
        smtp: Some(UpstreamEndpoint {
            host: "localhost".into(),
            port: upstream.port,
            tls: if implicit {
                TlsMode::Implicit
            } else {
                TlsMode::Starttls
            },
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
        oauth: None,
        sealed_fingerprint: "sha256:test".into(),
        auth: UpstreamAuth::Password(MailPassword::new(PASSWORD.into()).unwrap()),
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
        logs,
        _stop: stop.drop_guard(),
    }
}

/// An application connection past EHLO.
async fn connect(relay: &Relay) -> Client {
    let mut c = Client::connect(relay.addr).await;
    assert!(c.cmd("EHLO app.local").await.starts_with("250"));
    c
}

async fn data(c: &mut Client, body: &str) -> String {
    let r = c.cmd("DATA").await;
    assert!(r.starts_with("354"), "{r}");
    c.send(body.as_bytes()).await;
    c.reply().await
}

const MESSAGE: &str = "From: <app@example.test>\r\nSubject: t\r\n\r\nhello\r\n.\r\n";

/// Every encoding of the secret the relay ever sends.
fn secret_forms() -> Vec<String> {
    vec![
        PASSWORD.to_string(),
        STANDARD.encode(PASSWORD),
        STANDARD.encode(format!("\0{USER}\0{PASSWORD}")),
    ]
}

fn assert_no_secret(text: &str, context: &str) {
    for form in secret_forms() {
        assert!(
            !text.contains(&form),
            "{context} carries the secret ({form}): {text}"
        );
    }
}

/// Item 5: bytes after the 220 to STARTTLS, before the handshake, are an injection. The
/// connection is dropped before AUTH, and nothing is acknowledged.
#[tokio::test]
async fn plaintext_injected_before_starttls_is_refused() {
    for injection in [
        &b"250-injected\r\n250 AUTH PLAIN LOGIN\r\n"[..],
        b"554 5.7.1 refused\r\n",
        b"x",
        b"\r\n",
    ] {
        let relay = start(Script {
            starttls_injection: injection.to_vec(),
            ..Default::default()
        })
        .await;
        let mut c = connect(&relay).await;
        let r = c.cmd("MAIL FROM:<app@example.test>").await;
        assert!(r.starts_with("451 4.5.0"), "{injection:?}: {r}");
        assert!(r.contains("before the TLS handshake"), "{r}");
        let seen = relay.upstream.seen.lock().unwrap();
        let lines: Vec<&String> = seen.connections.iter().flatten().collect();
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("AUTH") || l.starts_with("MAIL")),
            "{injection:?}: the relay went on after the injection: {lines:?}"
        );
    }
}

/// Item 3: what upstream says in the authentication phase never reaches the application
/// nor the logs, for PLAIN and LOGIN; the application gets a fixed 454 4.7.0.
#[tokio::test]
async fn auth_phase_text_is_never_relayed_or_logged() {
    for mechanisms in ["PLAIN LOGIN", "LOGIN"] {
        for implicit_tls in [false, true] {
            let relay = start(Script {
                echo_auth: true,
                auth_mechanisms: mechanisms,
                implicit_tls,
                ..Default::default()
            })
            .await;
            let mut c = connect(&relay).await;
            let r = c.cmd("MAIL FROM:<app@example.test>").await;
            assert!(
                r.starts_with("454 4.7.0 upstream authentication failed"),
                "{r}"
            );
            assert!(!r.contains("you sent"), "{r}");
            assert_no_secret(&r, "the reply");
            let logs = relay.logs.text();
            assert!(!logs.contains("you sent"), "auth-phase text logged: {logs}");
            assert_no_secret(&logs, "the logs");
            let seen = relay.upstream.seen.lock().unwrap();
            let sent_auth = seen
                .connections
                .iter()
                .flatten()
                .any(|l| l.starts_with("AUTH"));
            assert!(sent_auth, "the test reached AUTH");
        }
    }
}

/// Item 3: any other upstream text that echoes the secret is scrubbed before it is relayed
/// or logged.
#[tokio::test]
async fn relayed_upstream_text_is_scrubbed_of_the_secret() {
    for mechanisms in ["PLAIN", "LOGIN"] {
        let relay = start(Script {
            echo_auth_in_rcpt: true,
            auth_mechanisms: mechanisms,
            ..Default::default()
        })
        .await;
        let mut c = connect(&relay).await;
        assert!(
            c.cmd("MAIL FROM:<app@example.test>")
                .await
                .starts_with("250")
        );
        let r = c.cmd("RCPT TO:<bob@example.test>").await;
        assert!(
            r.starts_with("550 upstream refused the recipient: 5.1.1"),
            "{r}"
        );
        assert!(r.contains("[redacted]"), "{r}");
        assert_no_secret(&r, "the RCPT reply");
        assert_no_secret(&relay.logs.text(), "the logs");
    }
}

/// Item 5: only a 2xx to the end of DATA is an acceptance. A 354 there means upstream and
/// the relay disagree about the message boundary: a protocol error, never 250.
#[tokio::test]
async fn end_of_data_replies_other_than_2xx_never_become_250() {
    for (upstream, expect) in [
        ("354 send more", "451 4.5.0"),
        (
            "554 5.7.1 spam",
            "554 upstream refused the message: 5.7.1 spam",
        ),
        (
            "452 4.3.1 full",
            "452 upstream deferred the message: 4.3.1 full",
        ),
        ("250 2.0.0 queued as X", "250 2.0.0"),
    ] {
        let relay = start(Script {
            final_reply: upstream,
            ..Default::default()
        })
        .await;
        let mut c = connect(&relay).await;
        assert!(
            c.cmd("MAIL FROM:<app@example.test>")
                .await
                .starts_with("250")
        );
        assert!(c.cmd("RCPT TO:<bob@example.test>").await.starts_with("250"));
        let r = data(&mut c, MESSAGE).await;
        assert!(r.starts_with(expect), "{upstream}: {r}");
    }
}

/// Item 11: each RCPT gets upstream's verdict; DATA goes to the accepted ones; partial
/// acceptance works; a transaction with none accepted never sends DATA.
#[tokio::test]
async fn recipients_get_upstream_verdicts_one_by_one() {
    let relay = start(Script {
        known_recipients: vec!["bob@example.test".into(), "carol@example.test".into()],
        ..Default::default()
    })
    .await;
    let mut c = connect(&relay).await;
    assert!(
        c.cmd("MAIL FROM:<app@example.test>")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<bob@example.test>")
            .await
            .starts_with("250 2.1.5")
    );
    let r = c.cmd("RCPT TO:<nobody@example.test>").await;
    assert!(
        r.starts_with("550 upstream refused the recipient: 5.1.1"),
        "{r}"
    );
    assert!(
        c.cmd("RCPT TO:<carol@example.test>")
            .await
            .starts_with("250 2.1.5")
    );
    assert!(data(&mut c, MESSAGE).await.starts_with("250 2.0.0"));

    // None accepted: DATA is refused by the relay and never reaches upstream.
    assert!(
        c.cmd("MAIL FROM:<app@example.test>")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<nobody@example.test>")
            .await
            .starts_with("550")
    );
    assert!(c.cmd("DATA").await.starts_with("503"));
    assert!(c.cmd("RSET").await.starts_with("250"));
    // Reused after RSET: one AUTH for both transactions.
    assert!(
        c.cmd("MAIL FROM:<app@example.test>")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<carol@example.test>")
            .await
            .starts_with("250")
    );
    assert!(data(&mut c, MESSAGE).await.starts_with("250 2.0.0"));

    let seen = relay.upstream.seen.lock().unwrap();
    assert_eq!(seen.messages.len(), 2);
    let lines: Vec<&String> = seen.connections.iter().flatten().collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("AUTH")).count(),
        1,
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.as_str() == "DATA").count(),
        2,
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.as_str() == "RSET"), "{lines:?}");
}
