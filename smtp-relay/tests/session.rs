//! The relay's application-facing behaviour over real loopback TCP, with the upstream replaced
//! by a recorder (the real-upstream tests are in peers.rs). Each bad-input item of the issue
//! has a test here.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mailcred_core::crd::{Policy, SmtpPolicy};
use mailcred_core::credential::{CredentialSource, UsableCredential};
use mailcred_core::{Error, KmsError};
use mailcred_smtp::testkit::RecordingUpstream;
use mailcred_smtp::{RelayConfig, RelayMetrics, SmtpRelay};
use support::app::credential;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

/// The upstream password of `support::app::credential`.
const PASSWORD: &str = "s3cret-Upstream-Pw";

struct Source(Result<Arc<UsableCredential>, fn() -> Error>);

#[async_trait]
impl CredentialSource for Source {
    async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
        match &self.0 {
            Ok(c) => Ok(c.clone()),
            Err(f) => Err(f()),
        }
    }
}

type Recorder = RecordingUpstream;

struct Relay {
    addr: std::net::SocketAddr,
    recorder: Recorder,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn start_with(policy: SmtpPolicy, config: RelayConfig, source: Option<Source>) -> Relay {
    let source = source.unwrap_or(Source(Ok(credential(policy))));
    let recorder = Recorder::default();
    let relay = SmtpRelay::with_upstream(
        config,
        Arc::new(source),
        RelayMetrics::unregistered(),
        recorder.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(relay.serve(listener, shutdown.clone()));
    Relay {
        addr,
        recorder,
        _shutdown: shutdown.drop_guard(),
    }
}

async fn start(policy: SmtpPolicy) -> Relay {
    start_with(policy, RelayConfig::default(), None).await
}

struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Client {
    async fn connect(relay: &Relay) -> Self {
        let (r, w) = TcpStream::connect(relay.addr).await.unwrap().into_split();
        let mut c = Self {
            r: BufReader::new(r),
            w,
        };
        let greeting = c.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        c
    }

    /// Reads one (multi-line) reply; returns all its lines joined.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).await.unwrap();
            if n == 0 {
                return format!("{all}<EOF>");
            }
            all.push_str(&line);
            if line.as_bytes().get(3) == Some(&b' ') {
                return all;
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    async fn ehlo_mail_rcpt(&mut self, from: &str, to: &[&str]) {
        assert!(self.cmd("EHLO app.local").await.starts_with("250"));
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        assert!(r.starts_with("250 2.1.0"), "{r}");
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>")).await;
            assert!(r.starts_with("250 2.1.5"), "{r}");
        }
    }

    async fn data(&mut self, body: &[u8]) -> String {
        let r = self.cmd("DATA").await;
        assert!(r.starts_with("354"), "{r}");
        self.send(body).await;
        self.reply().await
    }
}

fn msg(from: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <x@example.test>\r\nSubject: hi\r\n\r\nhello\r\n..dot line\r\n.\r\n"
    )
}

#[tokio::test]
async fn relays_with_envelope_and_unstuffed_body() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(&relay).await;
    let ehlo = c.cmd("EHLO app.local").await;
    for ext in [
        "PIPELINING",
        "SIZE 26214400",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "AUTH PLAIN LOGIN",
    ] {
        assert!(ehlo.contains(ext), "{ext} missing in {ehlo}");
    }
    assert!(
        c.cmd("MAIL FROM:<APP@example.test> BODY=8BITMIME SIZE=100")
            .await
            .starts_with("250 2.1.0")
    );
    assert!(c.cmd("RCPT TO:<a@example.test>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@other.test>").await.starts_with("250"));
    let r = c.data(msg("app@example.test").as_bytes()).await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert!(c.cmd("QUIT").await.starts_with("221"));
    let sent = relay.recorder.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].from, "APP@example.test");
    assert_eq!(sent[0].to, vec!["a@example.test", "b@other.test"]);
    assert!(sent[0].message.ends_with(b"hello\r\n.dot line\r\n"));
}

#[tokio::test]
async fn simple_commands_answer_per_rfc() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(&relay).await;
    assert!(c.cmd("HELO app.local").await.starts_with("250 "));
    assert!(c.cmd("NOOP").await.starts_with("250 2.0.0"));
    assert!(c.cmd("RSET").await.starts_with("250 2.0.0"));
    assert!(c.cmd("HELP").await.starts_with("214"));
    assert!(c.cmd("VRFY someone").await.starts_with("252"));
    assert!(c.cmd("STARTTLS").await.starts_with("502"));
    assert!(c.cmd("BDAT 10 LAST").await.starts_with("502"));
    assert!(c.cmd("FOO bar").await.starts_with("500 5.5.1"));
}

#[tokio::test]
async fn command_line_over_1000_octets_is_500_and_connection_survives() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(&relay).await;
    let long = format!("NOOP {}", "x".repeat(995)); // 1000 + CRLF = 1002 octets
    assert!(c.cmd(&long).await.starts_with("500 5.5.2"));
    // 64 KiB without a line end: discarded as it arrives, one reply at its end.
    let huge = format!("NOOP {}", "y".repeat(64 * 1024));
    assert!(c.cmd(&huge).await.starts_with("500 5.5.2"));
    let ok = format!("NOOP {}", "x".repeat(993)); // exactly 1000 octets with CRLF
    assert!(c.cmd(&ok).await.starts_with("250"));
}

#[tokio::test]
async fn command_line_limit_is_configurable_up_to_8192() {
    let config = RelayConfig {
        max_line: 8192,
        ..Default::default()
    };
    let relay = start_with(SmtpPolicy::default(), config, None).await;
    let mut c = Client::connect(&relay).await;
    assert!(
        c.cmd(&format!("NOOP {}", "x".repeat(8000)))
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd(&format!("NOOP {}", "x".repeat(8200)))
            .await
            .starts_with("500 5.5.2")
    );
}

#[tokio::test]
async fn oversized_message_is_552_after_reading_and_nothing_is_sent() {
    let policy = SmtpPolicy {
        max_message_bytes: 4096,
        ..Default::default()
    };
    let relay = start(policy).await;
    let mut c = Client::connect(&relay).await;
    let ehlo = c.cmd("EHLO app.local").await;
    assert!(ehlo.contains("SIZE 4096"), "{ehlo}");
    // Declared size over the limit: refused at MAIL.
    let r = c.cmd("MAIL FROM:<app@example.test> SIZE=5000").await;
    assert!(
        r.starts_with("552 5.3.4") && r.contains("smtp.maxMessageBytes"),
        "{r}"
    );
    // Undeclared: 1 MiB of body is read, discarded, then refused.
    c.ehlo_mail_rcpt("app@example.test", &["a@example.test"])
        .await;
    let mut body = b"From: app@example.test\r\n\r\n".to_vec();
    for _ in 0..(1 << 20) / 64 {
        body.extend_from_slice(&[b'z'; 62]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    let r = c.data(&body).await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // The connection is in sync afterwards.
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert!(relay.recorder.sent().is_empty());
}

#[tokio::test]
async fn bare_lf_is_normalized_and_cannot_smuggle_a_second_message() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(&relay).await;
    c.ehlo_mail_rcpt("app@example.test", &["a@example.test"])
        .await;
    let body = b"From: app@example.test\n\nline1\n.\nMAIL FROM:<evil@x.test>\nRCPT TO:<v@x.test>\nDATA\nsmuggled\n.\r\nstill inside\r\n.\r\n";
    let r = c.data(body).await;
    assert!(r.starts_with("250"), "{r}");
    let sent = relay.recorder.sent();
    assert_eq!(sent.len(), 1);
    let m = &sent[0].message;
    assert!(
        m.windows(7).any(|w| w == b"MAIL FR"),
        "smuggled text stays inside the one message"
    );
    assert!(
        m.windows(12).any(|w| w == b"still inside"),
        "\\n.\\r\\n after a bare LF did not end it"
    );
    assert!(
        m.windows(2).all(|w| w[1] != b'\n' || w[0] == b'\r'),
        "every LF is CRLF upstream"
    );
}

#[tokio::test]
async fn nul_in_data_is_refused() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(&relay).await;
    c.ehlo_mail_rcpt("app@example.test", &["a@example.test"])
        .await;
    let r = c.data(b"From: app@example.test\r\n\r\na\0b\r\n.\r\n").await;
    assert!(r.starts_with("554 5.6.0"), "{r}");
    assert!(relay.recorder.sent().is_empty());
}

#[tokio::test]
async fn commands_out_of_order_are_503() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(&relay).await;
    assert!(
        c.cmd("MAIL FROM:<app@example.test>")
            .await
            .starts_with("503"),
        "MAIL before EHLO"
    );
    assert!(c.cmd("EHLO a").await.starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<a@example.test>")
            .await
            .starts_with("503 5.5.1")
    );
    assert!(c.cmd("DATA").await.starts_with("503 5.5.1"));
    assert!(
        c.cmd("MAIL FROM:<app@example.test>")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd("MAIL FROM:<app@example.test>")
            .await
            .starts_with("503"),
        "nested MAIL"
    );
    assert!(
        c.cmd("DATA").await.starts_with("503 5.5.1"),
        "DATA without RCPT"
    );
    assert!(relay.recorder.sent().is_empty());
}

#[tokio::test]
async fn ten_thousand_pipelined_commands_in_one_write() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(&relay).await;
    let mut burst = Vec::new();
    for i in 0..10_000 {
        burst.extend_from_slice(if i % 2 == 0 { b"NOOP\r\n" } else { b"RSET\r\n" });
    }
    c.send(&burst).await;
    for i in 0..10_000 {
        let r = c.reply().await;
        assert!(r.starts_with("250 2.0.0"), "reply {i}: {r}");
    }
    // A pipelined transaction ending in DATA also works in one write.
    c.send(b"EHLO a\r\nMAIL FROM:<app@example.test>\r\nRCPT TO:<a@example.test>\r\nDATA\r\n")
        .await;
    for _ in 0..3 {
        assert!(c.reply().await.starts_with("250"));
    }
    assert!(c.reply().await.starts_with("354"));
    c.send(msg("app@example.test").as_bytes()).await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
}

#[tokio::test]
async fn client_stopping_mid_data_times_out_and_nothing_goes_upstream() {
    let config = RelayConfig {
        data_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let relay = start_with(SmtpPolicy::default(), config, None).await;
    let mut c = Client::connect(&relay).await;
    c.ehlo_mail_rcpt("app@example.test", &["a@example.test"])
        .await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"From: app@example.test\r\n\r\npartial body, then silence")
        .await;
    let r = c.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(c.reply().await.ends_with("<EOF>"));
    assert!(relay.recorder.sent().is_empty());
}

#[tokio::test]
async fn silent_client_hits_the_idle_timeout() {
    let config = RelayConfig {
        command_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let relay = start_with(SmtpPolicy::default(), config, None).await;
    let mut c = Client::connect(&relay).await;
    let r = c.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(c.reply().await.ends_with("<EOF>"));
}

#[tokio::test]
async fn invalid_addresses_are_501() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(&relay).await;
    assert!(c.cmd("EHLO a").await.starts_with("250"));
    for bad in [
        "MAIL FROM:<not-an-address>",
        "MAIL FROM:<a@>",
        "MAIL FROM:<@b.test>",
        "MAIL FROM:<a@[1.2.3.4]>",
        "MAIL FROM:app@example.test",
    ] {
        let r = c.cmd(bad).await;
        assert!(r.starts_with("501") || r.starts_with("550"), "{bad}: {r}");
    }
    assert!(
        c.cmd("MAIL FROM:<app@example.test>")
            .await
            .starts_with("250")
    );
    for bad in [
        "RCPT TO:<nobody>",
        "RCPT TO:<a@b@c>",
        "RCPT TO:<a@-bad-.test>",
        "RCPT TO:<>",
    ] {
        let r = c.cmd(bad).await;
        assert!(r.starts_with("501"), "{bad}: {r}");
    }
}

#[tokio::test]
async fn non_utf8_commands_are_refused() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(&relay).await;
    c.send(b"EHLO \xff\xfe\r\n").await;
    assert!(c.reply().await.starts_with("500 5.5.2"));
    c.send(b"NOOP \x00\r\n").await;
    assert!(c.reply().await.starts_with("500 5.5.2"));
    assert!(c.cmd("NOOP").await.starts_with("250"));
}

#[tokio::test]
async fn too_many_errors_close_the_connection() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(&relay).await;
    c.send(&b"BOGUS\r\n".repeat(150)).await;
    let mut last = String::new();
    for _ in 0..101 {
        last = c.reply().await;
    }
    assert!(last.starts_with("421"), "{last}");
}

#[tokio::test]
async fn sender_policy_on_envelope_and_headers() {
    let policy = SmtpPolicy {
        allowed_senders: vec!["*@Example.TEST".into(), "boss@other.test".into()],
        ..Default::default()
    };
    let relay = start(policy).await;
    let mut c = Client::connect(&relay).await;
    assert!(c.cmd("EHLO a").await.starts_with("250"));
    let r = c.cmd("MAIL FROM:<evil@elsewhere.test>").await;
    assert!(
        r.starts_with("550 5.7.1") && r.contains("smtp.allowedSenders"),
        "{r}"
    );
    assert!(
        c.cmd("MAIL FROM:<ANY@example.test>")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<a@example.test>").await.starts_with("250"));
    // From header names a foreign address.
    let r = c
        .data(b"From: \"app@example.test\" <evil@elsewhere.test>\r\n\r\nx\r\n.\r\n")
        .await;
    assert!(
        r.starts_with("550 5.7.1") && r.contains("smtp.allowedSenders"),
        "{r}"
    );
    // Sender header too.
    c.ehlo_mail_rcpt("x@example.test", &["a@example.test"])
        .await;
    let r = c
        .data(b"From: x@example.test\r\nSender: evil@elsewhere.test\r\n\r\nx\r\n.\r\n")
        .await;
    assert!(r.starts_with("550 5.7.1"), "{r}");
    // Allowed From.
    c.ehlo_mail_rcpt("x@example.test", &["a@example.test"])
        .await;
    let r = c
        .data(b"From: Boss <BOSS@other.test>\r\n\r\nx\r\n.\r\n")
        .await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(relay.recorder.sent().len(), 1);
}

#[tokio::test]
async fn recipient_policy_and_count() {
    let policy = SmtpPolicy {
        allowed_recipients: vec!["*@example.test".into()],
        max_recipients: 2,
        ..Default::default()
    };
    let relay = start(policy).await;
    let mut c = Client::connect(&relay).await;
    c.ehlo_mail_rcpt("app@example.test", &["a@example.test"])
        .await;
    let r = c.cmd("RCPT TO:<a@elsewhere.test>").await;
    assert!(
        r.starts_with("550 5.7.1") && r.contains("smtp.allowedRecipients"),
        "{r}"
    );
    assert!(c.cmd("RCPT TO:<b@EXAMPLE.test>").await.starts_with("250"));
    let r = c.cmd("RCPT TO:<c@example.test>").await;
    assert!(
        r.starts_with("550 5.7.1") && r.contains("smtp.maxRecipients"),
        "{r}"
    );
    assert!(
        c.data(msg("app@example.test").as_bytes())
            .await
            .starts_with("250")
    );
    assert_eq!(relay.recorder.sent()[0].to.len(), 2);
}

#[tokio::test]
async fn idn_recipient_is_relayed_in_ascii_form() {
    let policy = SmtpPolicy {
        allowed_recipients: vec!["*@bücher.example".into()],
        ..Default::default()
    };
    let relay = start(policy).await;
    let mut c = Client::connect(&relay).await;
    c.ehlo_mail_rcpt(
        "app@example.test",
        &["leser@BÜCHER.example", "a@xn--bcher-kva.example"],
    )
    .await;
    assert!(
        c.data(msg("app@example.test").as_bytes())
            .await
            .starts_with("250")
    );
    assert_eq!(
        relay.recorder.sent()[0].to,
        vec!["leser@xn--bcher-kva.example", "a@xn--bcher-kva.example"]
    );
}

#[tokio::test]
async fn send_disabled_is_550() {
    let policy = SmtpPolicy {
        enabled: false,
        ..Default::default()
    };
    let relay = start(policy).await;
    let mut c = Client::connect(&relay).await;
    assert!(c.cmd("EHLO a").await.starts_with("250"));
    let r = c.cmd("MAIL FROM:<app@example.test>").await;
    assert!(
        r.starts_with("550 5.7.1") && r.contains("smtp.enabled"),
        "{r}"
    );
}

#[tokio::test]
async fn rate_limits_answer_452_and_name_the_rule() {
    let policy = SmtpPolicy {
        rate_limits: mailcred_core::crd::RateLimits {
            messages_per_minute: Some(2),
            ..Default::default()
        },
        ..Default::default()
    };
    let relay = start(policy).await;
    let mut c = Client::connect(&relay).await;
    // A message the policy refuses takes no token.
    c.ehlo_mail_rcpt("app@example.test", &["a@example.test"])
        .await;
    assert!(
        c.data(msg("evil@x.test").as_bytes())
            .await
            .starts_with("550")
    );
    // A message the policy refuses takes no token.
    c.ehlo_mail_rcpt("app@example.test", &["a@example.test"])
        .await;
    assert!(
        c.data(msg("evil@x.test").as_bytes())
            .await
            .starts_with("550")
    );
    for _ in 0..2 {
        c.ehlo_mail_rcpt("app@example.test", &["a@example.test"])
            .await;
        assert!(
            c.data(msg("app@example.test").as_bytes())
                .await
                .starts_with("250")
        );
    }
    // The bucket is per credential: a second connection shares it.
    let mut c2 = Client::connect(&relay).await;
    c2.ehlo_mail_rcpt("app@example.test", &["a@example.test"])
        .await;
    let r = c2.data(msg("app@example.test").as_bytes()).await;
    assert!(
        r.starts_with("452 4.7.0") && r.contains("messagesPerMinute"),
        "{r}"
    );
    assert_eq!(relay.recorder.sent().len(), 2);
}

#[tokio::test]
async fn auth_is_accepted_and_ignored_without_a_token() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(&relay).await;
    assert!(c.cmd("EHLO a").await.starts_with("250"));
    assert!(
        c.cmd("AUTH PLAIN AGFwcABhbnl0aGluZw==")
            .await
            .starts_with("235 2.7.0")
    );
    assert!(
        c.cmd("AUTH PLAIN AGFwcABhbnl0aGluZw==")
            .await
            .starts_with("503")
    );
    let mut c = Client::connect(&relay).await;
    assert!(c.cmd("EHLO a").await.starts_with("250"));
    assert!(c.cmd("AUTH LOGIN").await.starts_with("334 VXNlcm5hbWU6"));
    assert!(c.cmd("YXBw").await.starts_with("334 UGFzc3dvcmQ6"));
    assert!(c.cmd("eA==").await.starts_with("235"));
    assert!(
        c.cmd("MAIL FROM:<app@example.test>")
            .await
            .starts_with("250")
    );
}

#[tokio::test]
async fn auth_checks_the_local_token_when_configured() {
    let config = RelayConfig {
        local_token: Some("tok3n".into()),
        ..Default::default()
    };
    let relay = start_with(SmtpPolicy::default(), config, None).await;
    let mut c = Client::connect(&relay).await;
    assert!(c.cmd("EHLO a").await.starts_with("250"));
    assert!(
        c.cmd("MAIL FROM:<app@example.test>")
            .await
            .starts_with("530 5.7.0")
    );
    // \0app\0wrong
    assert!(
        c.cmd("AUTH PLAIN AGFwcAB3cm9uZw==")
            .await
            .starts_with("535 5.7.8")
    );
    // \0app\0tok3n, offered without initial response
    assert!(c.cmd("AUTH PLAIN").await.starts_with("334"));
    assert!(c.cmd("AGFwcAB0b2szbg==").await.starts_with("235"));
    assert!(
        c.cmd("MAIL FROM:<app@example.test>")
            .await
            .starts_with("250")
    );
}

#[tokio::test]
async fn credential_failure_is_a_temporary_454_with_the_reason() {
    fn kms_down() -> Error {
        Error::Kms(KmsError::Unreachable {
            key_id: "k".into(),
            detail: "connection refused".into(),
        })
    }
    let relay = start_with(
        SmtpPolicy::default(),
        RelayConfig::default(),
        Some(Source(Err(kms_down))),
    )
    .await;
    let mut c = Client::connect(&relay).await;
    let ehlo = c.cmd("EHLO a").await;
    assert!(ehlo.contains("SIZE "), "EHLO still answers: {ehlo}");
    let r = c.cmd("MAIL FROM:<app@example.test>").await;
    assert!(
        r.starts_with("454 4.7.0") && r.contains("kms_unreachable"),
        "{r}"
    );
}

/// KMS hanging on a fresh sidecar: EHLO answers at once with the policy's SIZE (read
/// without decrypting); only MAIL waits, and gets a temporary failure when the wait is over.
#[tokio::test]
async fn ehlo_does_not_wait_for_the_credential() {
    struct Hanging;
    #[async_trait]
    impl CredentialSource for Hanging {
        async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
            std::future::pending().await
        }
        fn outline(&self) -> Option<mailcred_core::credential::CredentialOutline> {
            let mut policy = Policy::default();
            policy.smtp.max_message_bytes = 4321;
            Some(mailcred_core::credential::CredentialOutline {
                id: "ns/mail".into(),
                policy,
            })
        }
    }
    let config = RelayConfig {
        credential_timeout: Duration::from_millis(300),
        ..RelayConfig::default()
    };
    let relay = SmtpRelay::with_upstream(
        config,
        Arc::new(Hanging),
        RelayMetrics::unregistered(),
        Recorder::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(relay.serve(listener, shutdown.clone()));
    let _stop = shutdown.drop_guard();
    let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut c = Client {
        r: BufReader::new(r),
        w,
    };
    assert!(c.reply().await.starts_with("220 "));
    // The bound only turns a hang into a failure; the credential timeout (300 ms) would
    // fire first if EHLO asked for the credential, and the reply would not carry SIZE 4321.
    let ehlo = tokio::time::timeout(Duration::from_secs(10), c.cmd("EHLO a"))
        .await
        .expect("EHLO answered");
    assert!(ehlo.contains("SIZE 4321"), "{ehlo}");
    let r = c.cmd("MAIL FROM:<app@example.test>").await;
    assert!(r.starts_with("451 4.4.3"), "{r}");
}

/// Audit lines: one per message, JSON, with the facts and without the password or content.
#[tokio::test]
async fn audit_line_per_message_without_secret_or_content() {
    let logs = mailcred_core::testkit::CapturedLogs::start();
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(&relay).await;
    c.ehlo_mail_rcpt("app@example.test", &["a@example.test", "b@example.test"])
        .await;
    assert!(
        c.data(msg("app@example.test").as_bytes())
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd("AUTH PLAIN AGFwcABBcHBTaWRlUGFzc3dvcmQ=")
            .await
            .starts_with("235")
    );
    let r = c.cmd("MAIL FROM:<evil@x.test>").await;
    assert!(r.starts_with("550"));
    assert!(c.cmd("QUIT").await.starts_with("221"));
    drop(relay);
    let text = logs.text_with_audit_lines(2).await;
    let audits = logs.audit_lines();
    assert_eq!(audits.len(), 2, "{text}");
    assert_eq!(audits[0]["credential"], "ns/mail");
    assert_eq!(audits[0]["sender"], "app@example.test");
    assert_eq!(audits[0]["recipients"], 2);
    assert_eq!(audits[0]["outcome"], "relayed");
    assert_eq!(audits[0]["upstream_code"], 250);
    assert!(audits[0]["size"].as_u64().unwrap() > 0);
    assert_eq!(audits[1]["outcome"], "policy_denied");
    assert_eq!(audits[1]["reason"], "smtp.allowedSenders");
    assert!(!text.contains(PASSWORD));
    assert!(!text.contains("AppSidePassword") && !text.contains("AGFwcABBcHBTaWRlUGFzc3dvcmQ"));
    assert!(!text.contains("dot line"), "no content in logs");
}
