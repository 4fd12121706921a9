//! Envelope addresses and policy freshness (issue #10 items 7, 10, 13).

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mailcred_core::Error;
use mailcred_core::crd::{Policy, SmtpPolicy};
use mailcred_core::credential::{CredentialOutline, CredentialSource, UsableCredential};
use mailcred_smtp::RelayConfig;
use support::app::{Client, credential, start};

/// A source whose resource (outline) can be edited while the decrypted credential is cached.
struct Editable {
    credential: Arc<UsableCredential>,
    policy: Mutex<SmtpPolicy>,
}

#[async_trait]
impl CredentialSource for Editable {
    async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
        Ok(self.credential.clone())
    }
    fn outline(&self) -> Option<CredentialOutline> {
        Some(CredentialOutline {
            id: self.credential.id(),
            policy: Policy {
                smtp: self.policy.lock().unwrap().clone(),
                ..Default::default()
            },
        })
    }
}

/// Item 7: a policy edit reaches an open session at its next MAIL.
#[tokio::test]
async fn policy_edits_apply_from_the_next_mail_on() {
    let policy = SmtpPolicy {
        allowed_senders: vec!["app@example.test".into()],
        ..Default::default()
    };
    let source = Arc::new(Editable {
        credential: credential(policy.clone()),
        policy: Mutex::new(policy),
    });
    let relay = start(source.clone(), RelayConfig::default()).await;
    let mut c = Client::connect(relay.addr).await;
    c.envelope("app@example.test", &["a@example.test"]).await;
    assert!(c.cmd("RSET").await.starts_with("250"));
    source.policy.lock().unwrap().allowed_senders = vec!["other@example.test".into()];
    let r = c.cmd("MAIL FROM:<app@example.test>").await;
    assert!(
        r.starts_with("550 5.7.1") && r.contains("smtp.allowedSenders"),
        "{r}"
    );
    assert!(
        c.cmd("MAIL FROM:<other@example.test>")
            .await
            .starts_with("250")
    );
    // Recipient rules too, and the recipient count.
    source.policy.lock().unwrap().allowed_recipients = vec!["*@rcpt.test".into()];
    source.policy.lock().unwrap().max_recipients = 1;
    assert!(c.cmd("RSET").await.starts_with("250"));
    assert!(
        c.cmd("MAIL FROM:<other@example.test>")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<a@example.test>")
            .await
            .starts_with("550 5.7.1")
    );
    assert!(c.cmd("RCPT TO:<a@rcpt.test>").await.starts_with("250"));
    let r = c.cmd("RCPT TO:<b@rcpt.test>").await;
    assert!(r.contains("smtp.maxRecipients"), "{r}");
}

/// Items 10 and 13: routing characters are refused in recipients as in senders, whatever
/// the pattern; a non-ASCII local part is refused with the reason (no SMTPUTF8).
#[tokio::test]
async fn routing_and_non_ascii_local_parts_are_refused_with_reasons() {
    let policy = SmtpPolicy {
        allowed_senders: vec!["*@example.test".into()],
        allowed_recipients: vec!["*@rcpt.test".into(), "*".into()],
        ..Default::default()
    };
    let source = Arc::new(Editable {
        credential: credential(policy.clone()),
        policy: Mutex::new(policy),
    });
    let relay = start(source, RelayConfig::default()).await;
    let mut c = Client::connect(relay.addr).await;
    assert!(c.cmd("EHLO a").await.starts_with("250"));
    for sender in ["x%other@example.test", "other!x@example.test"] {
        let r = c.cmd(&format!("MAIL FROM:<{sender}>")).await;
        assert!(
            r.starts_with("501 5.1.7") && r.contains("routing"),
            "{sender}: {r}"
        );
    }
    let r = c.cmd("MAIL FROM:<jörg@example.test>").await;
    assert!(r.starts_with("553 5.6.7 SMTPUTF8 is not offered"), "{r}");
    assert!(
        c.cmd("MAIL FROM:<app@example.test>")
            .await
            .starts_with("250")
    );
    for rcpt in [
        "x%other@rcpt.test",
        "x%other.test@rcpt.test",
        "other!x@rcpt.test",
        "a%b%c@rcpt.test",
    ] {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert!(
            r.starts_with("501 5.1.3") && r.contains("routing"),
            "{rcpt}: {r}"
        );
    }
    for rcpt in ["jörg@rcpt.test", "\u{212A}im@rcpt.test"] {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert!(
            r.starts_with("553 5.6.7 SMTPUTF8 is not offered"),
            "{rcpt}: {r}"
        );
    }
    assert!(c.cmd("RCPT TO:<ok@rcpt.test>").await.starts_with("250"));
    assert!(c.cmd("QUIT").await.starts_with("221"));
    assert!(relay.recorder.sent().is_empty());
}
