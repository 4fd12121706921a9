//! AUTH with and without a local token, credential failures, EHLO before the credential,
//! audit lines.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mailcred_core::crd::{Policy, SmtpPolicy};
use mailcred_core::credential::{CredentialSource, UsableCredential};
use mailcred_core::{Error, KmsError};
use mailcred_smtp::RelayConfig;

use crate::harness::*;
use crate::support::app::{self, Client};

#[tokio::test]
async fn auth_is_accepted_and_ignored_without_a_token() {
    let relay = start(SmtpPolicy::default()).await;
    let mut c = Client::connect(relay.addr).await;
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
    let mut c = Client::connect(relay.addr).await;
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
    let mut c = Client::connect(relay.addr).await;
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
    let mut c = Client::connect(relay.addr).await;
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
    let relay = app::start(Arc::new(Hanging), config).await;
    let mut c = Client::connect(relay.addr).await;
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
    let mut c = Client::connect(relay.addr).await;
    c.envelope("app@example.test", &["a@example.test", "b@example.test"])
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
