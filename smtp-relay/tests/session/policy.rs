//! The credential's policy on the wire: senders, recipients, IDN, send disabled, rates.

use mailcred_core::crd::SmtpPolicy;

use crate::harness::*;
use crate::support::app::Client;

#[tokio::test]
async fn sender_policy_on_envelope_and_headers() {
    let policy = SmtpPolicy {
        allowed_senders: vec!["*@Example.TEST".into(), "boss@other.test".into()],
        ..Default::default()
    };
    let relay = start(policy).await;
    let mut c = Client::connect(relay.addr).await;
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
    c.envelope("x@example.test", &["a@example.test"]).await;
    let r = c
        .data(b"From: x@example.test\r\nSender: evil@elsewhere.test\r\n\r\nx\r\n.\r\n")
        .await;
    assert!(r.starts_with("550 5.7.1"), "{r}");
    // Allowed From.
    c.envelope("x@example.test", &["a@example.test"]).await;
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
    let mut c = Client::connect(relay.addr).await;
    c.envelope("app@example.test", &["a@example.test"]).await;
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
    let mut c = Client::connect(relay.addr).await;
    c.envelope(
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
    let mut c = Client::connect(relay.addr).await;
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
    let mut c = Client::connect(relay.addr).await;
    // A message the policy refuses takes no token.
    c.envelope("app@example.test", &["a@example.test"]).await;
    assert!(
        c.data(msg("evil@x.test").as_bytes())
            .await
            .starts_with("550")
    );
    // A message the policy refuses takes no token.
    c.envelope("app@example.test", &["a@example.test"]).await;
    assert!(
        c.data(msg("evil@x.test").as_bytes())
            .await
            .starts_with("550")
    );
    for _ in 0..2 {
        c.envelope("app@example.test", &["a@example.test"]).await;
        assert!(
            c.data(msg("app@example.test").as_bytes())
                .await
                .starts_with("250")
        );
    }
    // The bucket is per credential: a second connection shares it.
    let mut c2 = Client::connect(relay.addr).await;
    c2.envelope("app@example.test", &["a@example.test"]).await;
    let r = c2.data(msg("app@example.test").as_bytes()).await;
    assert!(
        r.starts_with("452 4.7.0") && r.contains("messagesPerMinute"),
        "{r}"
    );
    assert_eq!(relay.recorder.sent().len(), 2);
}
