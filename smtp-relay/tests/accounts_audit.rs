//! Account-set mode: audit lines. The cost of picking an account per message is measured by
//! `cargo bench -p mailcred-smtp --bench account_selection`.

mod support;

use support::accounts::*;
use support::app::Client;

/// Audit lines name the account's credential; neither the token nor the upstream passwords
/// appear in any log line.
#[tokio::test]
async fn audit_lines_name_the_account() {
    let logs = mailcred_core::testkit::CapturedLogs::start();
    let dir = directory();
    let relay = start(dir.clone()).await;
    for name in ["alice", "bob"] {
        let mut c = Client::connect(relay.addr).await;
        assert!(c.cmd("EHLO app").await.starts_with("250"));
        assert!(auth_plain(&mut c, name, TOKEN).await.starts_with("235"));
        assert!(
            send(&mut c, &format!("{name}@example.test"))
                .await
                .starts_with("250")
        );
        if name == "bob" {
            dir.remove("bob");
            assert!(
                c.cmd("MAIL FROM:<bob@example.test>")
                    .await
                    .starts_with("454")
            );
        }
        assert!(c.cmd("QUIT").await.starts_with("221"));
    }
    let mut c = Client::connect(relay.addr).await;
    assert_eq!(auth_plain(&mut c, "alice", "wrong").await, FAILED);
    drop(relay);
    let text = logs.text_with_audit_lines(3).await;
    let audits = logs.audit_lines();
    let seen: Vec<_> = audits
        .iter()
        .map(|a| {
            (
                a["credential"].as_str().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ns/alice", "relayed"),
            ("ns/bob", "relayed"),
            ("ns/bob", "temporary_failure")
        ],
        "{text}"
    );
    assert_eq!(audits[2]["reason"], "account_unavailable");
    for secret in [
        TOKEN,
        "upstream-password-of-alice",
        "upstream-password-of-bob",
    ] {
        assert!(!text.contains(secret), "{secret} in the logs");
    }
    assert!(!text.contains(&plain("", "alice", TOKEN)));
}
