//! Policy refusals: none of them reaches the mailbox.

use std::process::Command;

use mailcred_core::crd::SmtpPolicy;

use crate::support::*;

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn policy_refusals_never_reach_the_mailbox() {
    let s = Setup::new();
    let user = s.e("PEERS_USER").to_string();
    let pw = s.e("PEERS_PASSWORD").to_string();
    let policy = SmtpPolicy {
        allowed_recipients: vec!["*@example.test".into()],
        max_recipients: 2,
        max_message_bytes: 8192,
        rate_limits: mailcred_core::crd::RateLimits {
            messages_per_minute: Some(2),
            ..Default::default()
        },
        ..Default::default()
    };
    let file = s
        .credential_file("c.yaml", s.endpoint(false), &user, &pw, policy)
        .await;
    let sidecar = Sidecar::start(&s, &file, &[]);
    let dir = s.dir.path();
    let mut refused = Vec::new();

    let sub = token("bad-sender");
    let r = send_smtplib(
        &sidecar,
        dir,
        "someone@example.test",
        &[&user],
        &message(&user, &user, &sub, 10),
    );
    assert_eq!(r.code, 550, "{r:?}");
    assert!(
        r.msg.contains("5.7.1") && r.msg.contains("smtp.allowedSenders"),
        "{r:?}"
    );
    refused.push(sub);

    let sub = token("bad-from-header");
    let r = send_smtplib(
        &sidecar,
        dir,
        &user,
        &[&user],
        &message("boss@example.test", &user, &sub, 10),
    );
    assert_eq!(r.code, 550, "{r:?}");
    refused.push(sub);

    let sub = token("bad-rcpt");
    let r = send_smtplib(
        &sidecar,
        dir,
        &user,
        &["x@elsewhere.example"],
        &message(&user, &user, &sub, 10),
    );
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.msg.contains("smtp.allowedRecipients"), "{r:?}");
    refused.push(sub);

    let sub = token("too-big");
    let r = send_smtplib(
        &sidecar,
        dir,
        &user,
        &[&user],
        &message(&user, &user, &sub, 20_000),
    );
    assert_eq!(r.code, 552, "{r:?}");
    refused.push(sub);

    // Count: the third recipient is refused, the message goes to the first two.
    let sub = token("count");
    let reader = s.e("PEERS_USER2").to_string();
    let path = dir.join("count.eml");
    std::fs::write(&path, message(&user, &user, &sub, 10)).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            SEND_PY,
            &sidecar.port.to_string(),
            &user,
            &format!("{user},{reader},{}", s.e("PEERS_SINK_USER")),
        ])
        .arg(&path)
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(v["code"], 250);
    let sink = s.e("PEERS_SINK_USER");
    assert_eq!(v["refused"][sink][0], 550, "{v}");
    assert!(
        v["refused"][sink][1]
            .as_str()
            .unwrap()
            .contains("smtp.maxRecipients")
    );
    assert_delivered(&s, &user, &pw, &sub);

    // Rate: 2 per minute; the count message was the first, one more passes, then 452.
    let ok = token("rate-ok");
    assert_eq!(
        send_smtplib(
            &sidecar,
            dir,
            &user,
            &[&user],
            &message(&user, &user, &ok, 10)
        )
        .code,
        250
    );
    let sub = token("rate-refused");
    let r = send_smtplib(
        &sidecar,
        dir,
        &user,
        &[&user],
        &message(&user, &user, &sub, 10),
    );
    assert_eq!(r.code, 452, "{r:?}");
    assert!(
        r.msg.contains("4.7.0") && r.msg.contains("messagesPerMinute"),
        "{r:?}"
    );
    refused.push(sub);

    assert_delivered(&s, &user, &pw, &ok);
    for sub in &refused {
        assert_eq!(
            mailbox_count(&s, &user, &pw, sub),
            0,
            "{sub} must not be delivered"
        );
        let log = std::fs::read_to_string(s.e("PEERS_POSTFIX_LOG")).unwrap();
        assert!(!log.contains(sub.as_str()), "{sub} never went upstream");
    }
    let denied: Vec<_> = sidecar
        .audits()
        .into_iter()
        .filter(|a| a["outcome"] == "policy_denied")
        .collect();
    assert_eq!(denied.len(), 5, "{:#?}", sidecar.audits());

    // Sending disabled.
    let file = s
        .credential_file(
            "off.yaml",
            s.endpoint(false),
            &user,
            &pw,
            SmtpPolicy {
                enabled: false,
                ..Default::default()
            },
        )
        .await;
    let off = Sidecar::start(&s, &file, &[]);
    let r = send_smtplib(
        &off,
        dir,
        &user,
        &[&user],
        &message(&user, &user, &token("off"), 10),
    );
    assert_eq!(r.code, 550);
    assert!(r.msg.contains("smtp.enabled"), "{r:?}");
}
