//! Delivery into the mailbox over STARTTLS and implicit TLS; swaks and curl as the application.

use std::process::Command;

use mailcred_core::crd::SmtpPolicy;

use crate::support::*;

async fn relays_to_mailbox(implicit: bool) {
    let s = Setup::new();
    let user = s.e("PEERS_USER").to_string();
    let pw = s.e("PEERS_PASSWORD").to_string();
    let file = s
        .credential_file(
            "c.yaml",
            s.endpoint(implicit),
            &user,
            &pw,
            SmtpPolicy::default(),
        )
        .await;
    let sidecar = Sidecar::start(&s, &file, &[]);
    let mut subjects = Vec::new();
    for i in 0..3 {
        let subject = token(if implicit { "implicit" } else { "starttls" });
        let r = send_smtplib(
            &sidecar,
            s.dir.path(),
            &user,
            &[&user],
            &message(&user, &user, &subject, 1000 * (i + 1)),
        );
        assert_eq!(r.code, 250, "{r:?}\n{}", sidecar.logs());
        subjects.push(subject);
    }
    for subject in &subjects {
        assert_delivered(&s, &user, &pw, subject);
    }
    // The body arrives as the app sent it: the dot-stuffed line unstuffed once, no extra line.
    let out = Command::new("python3")
        .args([
            "-c",
            FETCH_PY,
            s.e("PEERS_IMAP_TLS_PORT"),
            &user,
            &pw,
            s.e("PEERS_CA_PEM"),
            &subjects[0],
        ])
        .output()
        .unwrap();
    let body = out.stdout;
    let sent = message(&user, &user, &subjects[0], 1000);
    let sent_body = &sent[sent.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(sent_body)
    );
    let session = postfix_session_of(&s, &subjects[2]);
    assert!(
        session
            .iter()
            .any(|l| l.contains("TLS connection established")),
        "{session:#?}"
    );
    assert!(
        session
            .iter()
            .any(|l| l.contains(&format!("sasl_username={user}"))),
        "{session:#?}"
    );
    // One pool: the three messages went over one authenticated upstream connection.
    let sessions: std::collections::HashSet<_> = subjects
        .iter()
        .map(|sub| postfix_session_of(&s, sub).first().cloned())
        .collect();
    assert_eq!(sessions.len(), 1, "pooled upstream connection reused");
    let audits = sidecar.audits();
    assert_eq!(audits.len(), 3);
    for a in &audits {
        assert_eq!(a["outcome"], "relayed");
        assert_eq!(a["upstream_code"], 250);
        assert_eq!(a["credential"], "ns/mail");
        assert_eq!(a["pod"], "test-pod");
    }
    assert!(
        sidecar.logs().contains("\"level\":\"TRACE\""),
        "the run logged at every level"
    );
    assert_eq!(
        admin_get(sidecar.admin, "/healthz"),
        (true, "ok\n".to_string())
    );
    assert_eq!(
        admin_get(sidecar.admin, "/readyz"),
        (true, "ready\n".to_string())
    );
    let metrics = reqwest_metrics(sidecar.admin);
    assert!(
        metrics.contains("mailcred_smtp_messages_total{outcome=\"relayed\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mailcred_kms_decrypts_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert_no_password(&s, &sidecar, &pw);
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn relays_over_starttls_into_the_mailbox() {
    relays_to_mailbox(false).await;
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn relays_over_implicit_tls_into_the_mailbox() {
    relays_to_mailbox(true).await;
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn swaks_and_curl_as_the_application() {
    let s = Setup::new();
    let user = s.e("PEERS_USER").to_string();
    let pw = s.e("PEERS_PASSWORD").to_string();
    let reader = s.e("PEERS_USER2").to_string();
    let reader_pw = s.e("PEERS_PASSWORD2").to_string();
    let file = s
        .credential_file(
            "c.yaml",
            s.endpoint(false),
            &user,
            &pw,
            SmtpPolicy::default(),
        )
        .await;
    let sidecar = Sidecar::start(&s, &file, &[]);
    let swaks_subject = token("swaks");
    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", sidecar.port),
            "--helo",
            "app.local",
            "--from",
            &user,
            "--to",
            &reader,
        ])
        .args([
            "--header",
            &format!("Subject: {swaks_subject}"),
            "--header",
            &format!("From: {user}"),
            "--body",
            "hello from swaks",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "swaks: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let curl_subject = token("curl");
    let path = s.dir.path().join("curl.eml");
    std::fs::write(&path, message(&user, &reader, &curl_subject, 100)).unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            &format!("smtp://127.0.0.1:{}/app.local", sidecar.port),
            "--mail-from",
            &user,
            "--mail-rcpt",
            &reader,
            "--upload-file",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_delivered(&s, &reader, &reader_pw, &swaks_subject);
    assert_delivered(&s, &reader, &reader_pw, &curl_subject);
    assert_no_password(&s, &sidecar, &pw);
}
