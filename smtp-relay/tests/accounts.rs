//! Account-set mode over real loopback TCP with a recording upstream: AUTH picks the account,
//! the session sends with that account's credential and policy, every refusal reads the same,
//! and an account that goes away mid-session stops at the next MAIL.

mod support;

use std::sync::Arc;

use mailcred_core::crd::{RateLimits, SmtpPolicy};
use mailcred_core::credential::CredentialSource;
use mailcred_core::testkit::{FailingSource, StaticDirectory};
use mailcred_smtp::testkit::RecordingUpstream;
use mailcred_smtp::{Error, RelayConfig, RelayMetrics, SmtpRelay};
use proptest::prelude::*;
use support::accounts::*;
use support::app::Client;

#[test]
fn account_mode_needs_a_non_empty_local_token() {
    for token in [None, Some(String::new())] {
        let config = RelayConfig {
            local_token: token,
            ..RelayConfig::default()
        };
        assert!(matches!(
            config.check_account_mode(),
            Err(Error::AccountModeWithoutToken)
        ));
        let unused: Arc<dyn CredentialSource> = Arc::new(FailingSource::kms_down());
        let relay = SmtpRelay::with_upstream(
            config,
            unused,
            RelayMetrics::unregistered(),
            RecordingUpstream::default(),
        );
        let err = relay.with_accounts(directory()).err().expect("refused");
        assert_eq!(err.metric_label(), "account_mode_without_token");
        assert!(err.to_string().contains("local token"), "{err}");
    }
}

#[tokio::test]
async fn each_session_sends_with_the_account_it_picked() {
    let relay = start(directory()).await;
    let mut a = Client::connect(relay.addr).await;
    assert!(
        a.cmd("EHLO app").await.contains("250-SIZE\r\n"),
        "no account yet: SIZE without a number"
    );
    assert_eq!(
        auth_plain(&mut a, "alice", TOKEN).await,
        "235 2.7.0 authenticated\r\n"
    );
    let ehlo = a.cmd("EHLO app").await;
    assert!(
        ehlo.contains(&format!("SIZE {}", SmtpPolicy::default().max_message_bytes)),
        "{ehlo}"
    );
    assert!(send(&mut a, "alice@example.test").await.starts_with("250"));
    // alice's policy: only alice's address, not bob's.
    let r = a.cmd("MAIL FROM:<bob@example.test>").await;
    assert!(r.starts_with("550 5.7.1"), "{r}");

    let mut b = Client::connect(relay.addr).await;
    assert!(b.cmd("EHLO app").await.starts_with("250"));
    assert_eq!(
        auth_login(&mut b, "bob", TOKEN).await,
        "235 2.7.0 authenticated\r\n"
    );
    assert!(send(&mut b, "bob@example.test").await.starts_with("250"));
    // The authzid may name the account itself.
    let mut b2 = Client::connect(relay.addr).await;
    let r = b2
        .cmd(&format!("AUTH PLAIN {}", plain("bob", "bob", TOKEN)))
        .await;
    assert_eq!(r, "235 2.7.0 authenticated\r\n");

    let sent = relay.recorder.sent();
    let by: Vec<_> = sent
        .iter()
        .map(|s| (s.credential.as_str(), s.from.as_str()))
        .collect();
    assert_eq!(
        by,
        [
            ("ns/alice", "alice@example.test"),
            ("ns/bob", "bob@example.test")
        ]
    );
}

#[tokio::test]
async fn mail_before_auth_is_530() {
    let relay = start(directory()).await;
    let mut c = Client::connect(relay.addr).await;
    assert!(c.cmd("EHLO app").await.starts_with("250"));
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.test>").await,
        "530 5.7.0 authentication required\r\n"
    );
    assert!(relay.recorder.sent().is_empty());
}

#[tokio::test]
async fn every_refusal_reads_the_same() {
    let dir = directory();
    let relay = start(dir.clone()).await;
    dir.remove("bob");
    let mut replies = Vec::new();
    for (user, password) in [
        ("alice", "wrong-token"),
        ("nobody", TOKEN),
        ("nobody", "wrong-token"),
        ("bob", TOKEN), // removed a moment ago
        ("", TOKEN),
        ("alice", ""),
    ] {
        let mut c = Client::connect(relay.addr).await;
        assert!(c.cmd("EHLO app").await.starts_with("250"));
        replies.push(auth_plain(&mut c, user, password).await);
        replies.push(auth_login(&mut c, user, password).await);
        // Still not authenticated after the refusal.
        assert!(
            c.cmd("MAIL FROM:<alice@example.test>")
                .await
                .starts_with("530")
        );
    }
    let mut c = Client::connect(relay.addr).await;
    let r = c
        .cmd(&format!("AUTH PLAIN {}", plain("bob", "alice", TOKEN)))
        .await;
    replies.push(r);
    for r in &replies {
        assert_eq!(r, FAILED);
    }
    let text = metrics_text(&relay.metrics);
    for (outcome, n) in [
        ("wrong_token", 6),
        ("unknown_account", 6),
        ("wrong_authzid", 1),
    ] {
        let line = format!("mailcred_smtp_account_auth_total{{outcome=\"{outcome}\"}} {n}");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(
        !text.contains("alice") && !text.contains("nobody"),
        "no account label"
    );
}

fn metrics_text(metrics: &RelayMetrics) -> String {
    // The relay's metrics were registered nowhere: a clone of the family in a registry of
    // its own reads the same counters.
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register(
        "mailcred_smtp_account_auth",
        "",
        metrics.account_auth.clone(),
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    out
}

#[tokio::test]
async fn an_account_that_goes_away_stops_at_the_next_mail() {
    let dir = directory();
    let relay = start(dir.clone()).await;
    let mut c = Client::connect(relay.addr).await;
    assert!(c.cmd("EHLO app").await.starts_with("250"));
    assert!(auth_plain(&mut c, "alice", TOKEN).await.starts_with("235"));
    assert!(send(&mut c, "alice@example.test").await.starts_with("250"));
    dir.remove("alice");
    let r = c.cmd("MAIL FROM:<alice@example.test>").await;
    assert_eq!(
        r,
        "454 4.7.0 credential unavailable (account_unavailable); try again later\r\n"
    );
    // Its source failing instead (lifetime ended, KMS refuses): also 454.
    dir.insert("alice", Arc::new(FailingSource::kms_down()));
    let r = c.cmd("MAIL FROM:<alice@example.test>").await;
    assert!(r.starts_with("454 4.7.0 credential unavailable"), "{r}");
    // A new connection cannot pick it once it is gone.
    dir.remove("alice");
    let mut d = Client::connect(relay.addr).await;
    assert_eq!(auth_plain(&mut d, "alice", TOKEN).await, FAILED);
    assert_eq!(relay.recorder.sent().len(), 1);
}

#[tokio::test]
async fn rate_limits_are_per_account() {
    let one_a_minute = SmtpPolicy {
        rate_limits: RateLimits {
            messages_per_minute: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let dir = Arc::new(StaticDirectory::new());
    dir.insert("alice", account("alice", one_a_minute.clone()));
    dir.insert("bob", account("bob", one_a_minute));
    let relay = start(dir).await;
    let mut a = Client::connect(relay.addr).await;
    assert!(a.cmd("EHLO app").await.starts_with("250"));
    assert!(auth_plain(&mut a, "alice", TOKEN).await.starts_with("235"));
    assert!(send(&mut a, "alice@example.test").await.starts_with("250"));
    let r = send(&mut a, "alice@example.test").await;
    assert!(
        r.starts_with("452 4.7.0 policy smtp.rateLimits.messagesPerMinute"),
        "{r}"
    );
    let mut b = Client::connect(relay.addr).await;
    assert!(b.cmd("EHLO app").await.starts_with("250"));
    assert!(auth_plain(&mut b, "bob", TOKEN).await.starts_with("235"));
    assert!(
        send(&mut b, "bob@example.test").await.starts_with("250"),
        "bob has his own bucket"
    );
    // alice's bucket was not reset by bob's use.
    let mut a2 = Client::connect(relay.addr).await;
    assert!(auth_plain(&mut a2, "alice", TOKEN).await.starts_with("235"));
    assert!(a2.cmd("EHLO app").await.starts_with("250"));
    let r = send(&mut a2, "alice@example.test").await;
    assert!(
        r.starts_with("452 4.7.0 policy smtp.rateLimits.messagesPerMinute"),
        "{r}"
    );
    assert_eq!(relay.recorder.sent().len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the name and the (wrong) token, the failed AUTH reads the same whether the
    /// account exists or not, for PLAIN and LOGIN.
    #[test]
    fn a_failed_auth_does_not_tell_whether_the_account_exists(
        name in "[a-z0-9][a-z0-9.-]{0,40}",
        token in "[ -~]{0,64}",
        right_token in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (exists, missing) = rt.block_on(async {
            let password = if right_token { TOKEN.to_owned() } else { token.clone() };
            let with = Arc::new(StaticDirectory::new());
            with.insert(&name, account("x", SmtpPolicy::default()));
            let without = Arc::new(StaticDirectory::new());
            let mut out = Vec::new();
            for dir in [with, without] {
                let relay = start(dir).await;
                let mut c = Client::connect(relay.addr).await;
                let p = auth_plain(&mut c, &name, &password).await;
                let mut c = Client::connect(relay.addr).await;
                let l = auth_login(&mut c, &name, &password).await;
                out.push((p, l));
            }
            (out[0].clone(), out[1].clone())
        });
        if right_token || token == TOKEN {
            // Right token: the existing account is accepted, the missing one refused.
            prop_assert_eq!(&missing.0, FAILED);
            prop_assert_eq!(&missing.1, FAILED);
        } else {
            prop_assert_eq!(&exists, &missing);
            prop_assert_eq!(&exists.0, FAILED);
        }
    }
}
