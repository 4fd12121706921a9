//! RFC replies and bad input: long lines, oversized messages, bare LF, NUL, order, pipelining,
//! stalled and silent clients, invalid addresses, non-UTF-8, error limits.

use std::time::Duration;

use mailcred_core::crd::SmtpPolicy;
use mailcred_smtp::RelayConfig;

use crate::harness::*;
use crate::support::app::Client;

#[tokio::test]
async fn relays_with_envelope_and_unstuffed_body() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(relay.addr).await;
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
    let mut c = Client::connect(relay.addr).await;
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
    let mut c = Client::connect(relay.addr).await;
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
    let mut c = Client::connect(relay.addr).await;
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
    let mut c = Client::connect(relay.addr).await;
    let ehlo = c.cmd("EHLO app.local").await;
    assert!(ehlo.contains("SIZE 4096"), "{ehlo}");
    // Declared size over the limit: refused at MAIL.
    let r = c.cmd("MAIL FROM:<app@example.test> SIZE=5000").await;
    assert!(
        r.starts_with("552 5.3.4") && r.contains("smtp.maxMessageBytes"),
        "{r}"
    );
    // Undeclared: 1 MiB of body is read, discarded, then refused.
    c.envelope("app@example.test", &["a@example.test"]).await;
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
    let mut c = Client::connect(relay.addr).await;
    c.envelope("app@example.test", &["a@example.test"]).await;
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
    let mut c = Client::connect(relay.addr).await;
    c.envelope("app@example.test", &["a@example.test"]).await;
    let r = c.data(b"From: app@example.test\r\n\r\na\0b\r\n.\r\n").await;
    assert!(r.starts_with("554 5.6.0"), "{r}");
    assert!(relay.recorder.sent().is_empty());
}

#[tokio::test]
async fn commands_out_of_order_are_503() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(relay.addr).await;
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
    let mut c = Client::connect(relay.addr).await;
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
    let mut c = Client::connect(relay.addr).await;
    c.envelope("app@example.test", &["a@example.test"]).await;
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
    let mut c = Client::connect(relay.addr).await;
    let r = c.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(c.reply().await.ends_with("<EOF>"));
}

#[tokio::test]
async fn invalid_addresses_are_501() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(relay.addr).await;
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
    let mut c = Client::connect(relay.addr).await;
    c.send(b"EHLO \xff\xfe\r\n").await;
    assert!(c.reply().await.starts_with("500 5.5.2"));
    c.send(b"NOOP \x00\r\n").await;
    assert!(c.reply().await.starts_with("500 5.5.2"));
    assert!(c.cmd("NOOP").await.starts_with("250"));
}

#[tokio::test]
async fn too_many_errors_close_the_connection() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(relay.addr).await;
    c.send(&b"BOGUS\r\n".repeat(150)).await;
    let mut last = String::new();
    for _ in 0..101 {
        last = c.reply().await;
    }
    assert!(last.starts_with("421"), "{last}");
}
