//! Read-only sessions: python imaplib over STARTTLS and curl over implicit TLS as the application.

use std::time::Duration;

use crate::common::*;
use crate::support::*;
use mailcred_core::crd::TlsMode;
use mailcred_core::testkit::process_logs;
use mailcred_imap::ImapProxyConfig;
use serde_json::json;

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn read_only_session_with_python_imaplib_over_starttls() {
    process_logs();
    let peers = Peers::load();
    let user = peers.get("PEERS_USER").to_owned();
    let password = peers.get("PEERS_PASSWORD").to_owned();
    let inbox = peers.maildir(&user, None);
    peers.maildir(&user, Some("Secret"));
    peers.maildir(&user, Some("Archive.2024"));
    let tag = marker();
    let sizes = [
        1024usize,
        64 * 1024,
        1024 * 1024,
        5 * 1024 * 1024,
        20 * 1024 * 1024,
    ];
    let messages: Vec<Vec<u8>> = sizes
        .iter()
        .map(|&n| deliver(&inbox, &format!("ro {tag}"), n))
        .collect();
    let log_before = peers.dovecot_log().len();

    let source = SealedSource::new(
        Some(peers.imap(TlsMode::Starttls)),
        &user,
        &password,
        policy(true, &["INBOX", "Archive.*"]),
    )
    .await;
    let proxy = start_proxy(
        ImapProxyConfig {
            pod: "reader-0".into(),
            ..Default::default()
        },
        source,
    )
    .await;
    let (r, transcript) = run_app("read_only", proxy.addr.port(), json!({ "marker": tag })).await;

    // Login and capabilities: the proxy's own, not dovecot's.
    assert_eq!(r["login"]["typ"], "OK");
    let caps = r["capability"]["data"][0].as_str().unwrap();
    assert_eq!(
        caps,
        "IMAP4rev1 LITERAL+ ID IDLE NAMESPACE ENABLE ESEARCH CONDSTORE UNSELECT CHILDREN"
    );
    // LIST / LSUB: Secret and the Archive parent are filtered out.
    let list: Vec<&str> = r["list"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(list.iter().any(|l| l.ends_with(" INBOX")), "{list:?}");
    assert!(
        list.iter().any(|l| l.ends_with(" Archive.2024")),
        "{list:?}"
    );
    assert!(!list.iter().any(|l| l.contains("Secret")), "{list:?}");
    assert!(!list.iter().any(|l| l.ends_with(" Archive")), "{list:?}");
    // SELECT became EXAMINE: dovecot answers READ-ONLY.
    assert_eq!(
        r["select"]["readonly_raised"], "INBOX is not writable",
        "{}",
        r["select"]
    );
    assert_eq!(r["select"]["state"], "SELECTED");
    assert!(
        r["select_untagged"]["READ-ONLY"].is_array(),
        "{}",
        r["select_untagged"]
    );
    // SEARCH and FETCH: every body, 1 KiB to 20 MiB, byte for byte.
    let fetched = r["fetched"].as_array().unwrap();
    assert_eq!(fetched.len(), messages.len(), "{}", r["search"]);
    // Maildir delivery order (hence UID order) is not the order the test wrote them in.
    let mut want: Vec<(usize, String)> = messages
        .iter()
        .map(|m| (m.len(), sha256_hex(m).to_string()))
        .collect();
    let mut got: Vec<(usize, String)> = fetched
        .iter()
        .map(|g| {
            (
                g["len"].as_u64().unwrap() as usize,
                g["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(r["flags"]["typ"], "OK");
    // Every write and every other mailbox refused, with the reason.
    let noperm_ro = "NO [NOPERM] Read-only access: this credential's policy forbids changes";
    for name in [
        "STORE",
        "UID STORE",
        "COPY",
        "UID COPY",
        "MOVE",
        "UID MOVE",
        "EXPUNGE",
        "UID EXPUNGE",
        "APPEND",
        "CREATE",
        "DELETE",
        "RENAME",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
    ] {
        assert_eq!(refused(&r, name), noperm_ro, "{name}");
    }
    for name in ["SETACL", "SETQUOTA"] {
        assert_eq!(
            refused(&r, name),
            "NO [NOPERM] Account administration is not allowed through mailcred",
            "{name}"
        );
    }
    for name in ["SELECT Secret", "EXAMINE Secret", "STATUS Secret"] {
        assert_eq!(
            refused(&r, name),
            "NO [NOPERM] Mailbox not allowed by this credential's policy",
            "{name}"
        );
    }
    assert_eq!(
        refused(&r, "SELECT mUTF-7 spoof"),
        "BAD Invalid mailbox name (modified UTF-7 expected)"
    );
    for name in ["XYZZY", "GETACL", "COMPRESS"] {
        assert_eq!(
            refused(&r, name),
            "BAD Unknown or unsupported command",
            "{name}"
        );
    }
    assert_eq!(refused(&r, "STARTTLS"), "BAD STARTTLS is not offered");
    assert_eq!(refused(&r, "LOGIN again"), "BAD Already logged in");
    assert!(
        r["status_inbox"]["tagged"]
            .as_str()
            .unwrap()
            .starts_with("OK")
    );
    assert!(
        r["status_archive"]["tagged"]
            .as_str()
            .unwrap()
            .starts_with("OK")
    );
    // LIST-STATUS (not advertised, but dovecot has it): STATUS of Secret filtered too.
    let ls = r["list_status"]["untagged"].to_string();
    assert!(!ls.contains("Secret"), "{ls}");
    assert!(
        ls.contains("STATUS INBOX") || ls.contains("STATUS \\\"INBOX\\\""),
        "{ls}"
    );
    // ID answered by the proxy; ENABLE passes only CONDSTORE.
    assert_eq!(r["id"]["untagged"][0], "* ID (\"name\" \"mailcred\")");
    let enabled = r["enable"]["untagged"].as_array().unwrap();
    assert!(
        enabled.iter().any(|l| l == "* ENABLED CONDSTORE"),
        "{enabled:?}"
    );
    assert!(
        !enabled.iter().any(|l| l.as_str().unwrap().contains("UTF8")),
        "{enabled:?}"
    );
    assert!(
        r["examine"]["tagged"]
            .as_str()
            .unwrap()
            .starts_with("OK [READ-ONLY]")
    );

    // The app's words never went upstream; dovecot saw the credential's user over TLS.
    let log = &peers.dovecot_log()[log_before..];
    assert!(
        log.lines().any(
            |l| l.contains(&format!("Login: user=<{user}>, method=PLAIN")) && l.contains(", TLS")
        ),
        "no TLS login of {user} in dovecot's log:\n{log}"
    );
    assert!(!log.contains("app-user") && !log.contains("app-words-never-go-upstream"));
    assert_no_password(&password, "what the application received", &transcript);
    assert_no_password(&password, "the proxy's logs", logs_text().as_bytes());
    assert_no_password(&password, "dovecot's log", log.as_bytes());
    // One audit line for the session, with the credential, pod and mailbox.
    let text = proxy.metrics_text();
    proxy.stop().await;
    let audit = logs_text();
    let line = audit
        .lines()
        .find(|l| {
            l.contains("\"event\":\"imap_session\"")
                && l.contains("reader-0")
                && l.contains("\"outcome\":\"logout\"")
        })
        .unwrap_or_else(|| panic!("no session audit line:\n{audit}"));
    assert!(
        line.contains("\"target\":\"audit\"") && line.contains("apps/mailbox-reader"),
        "{line}"
    );
    assert!(line.contains(r#"\"INBOX\""#), "{line}");
    assert!(
        audit.contains("\"event\":\"imap_denied\"") && audit.contains("\"reason\":\"read_only\"")
    );
    assert!(
        text.contains("mailcred_imap_denials_total{reason=\"read_only\"} 14"),
        "{text}"
    );
    assert!(
        text.contains("mailcred_imap_commands_total{command=\"UID FETCH\"}"),
        "{text}"
    );
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn curl_as_the_application_over_implicit_tls() {
    let peers = Peers::load();
    let user = peers.get("PEERS_USER").to_owned();
    let password = peers.get("PEERS_PASSWORD").to_owned();
    let inbox = peers.maildir(&user, None);
    peers.maildir(&user, Some("Secret"));
    let tag = marker();
    let msg = deliver(&inbox, &format!("curl {tag}"), 300 * 1024);
    let source = SealedSource::new(
        Some(peers.imap(TlsMode::Implicit)),
        &user,
        &password,
        policy(true, &["INBOX"]),
    )
    .await;
    let proxy = start_proxy(ImapProxyConfig::default(), source).await;
    let base = format!("imap://127.0.0.1:{}", proxy.addr.port());
    let curl = |args: Vec<String>| async move {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new("curl")
                .args(["-sS", "--max-time", "100", "-u", "curl-app:anything"])
                .args(&args)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        (
            out.status.code(),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // LIST: only INBOX.
    let (code, out, err) = curl(vec![format!("{base}/")]).await;
    assert_eq!(code, Some(0), "{err}");
    let list = String::from_utf8_lossy(&out);
    assert!(list.contains("INBOX") && !list.contains("Secret"), "{list}");
    // SEARCH, then FETCH the message by UID.
    let (code, out, err) = curl(vec![format!("{base}/INBOX?SUBJECT%20%22curl%20{tag}%22")]).await;
    assert_eq!(code, Some(0), "{err}");
    let search = String::from_utf8_lossy(&out).into_owned();
    let seq: u32 = search
        .split_whitespace()
        .last()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{search}"));
    let (code, out, err) = curl(vec![format!("{base}/INBOX;MAILINDEX={seq}")]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.len(),
        msg.len(),
        "FETCH through curl returned another length"
    );
    assert!(out == msg, "FETCH through curl returned other bytes");
    // A write through a custom request is refused.
    let (code, out, _) = curl(vec![
        "-X".into(),
        format!("STORE {seq} +FLAGS (\\Deleted)"),
        format!("{base}/INBOX"),
    ])
    .await;
    assert_ne!(
        code,
        Some(0),
        "STORE must fail: {}",
        String::from_utf8_lossy(&out)
    );
    let (code, _, _) = curl(vec![format!("{base}/Secret;MAILINDEX=1")]).await;
    assert_ne!(code, Some(0), "SELECT Secret must fail");
    assert_no_password(&password, "curl's output", &out);
    proxy.stop().await;
}
