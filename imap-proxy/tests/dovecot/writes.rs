//! IDLE, writes to allowed mailboxes only, and bad input after login.

use crate::common::*;
use crate::support::*;
use mailcred_core::crd::TlsMode;
use mailcred_imap::ImapProxyConfig;
use serde_json::json;

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn idle_shows_new_mail_and_a_non_done_line_ends_it_with_bad() {
    let peers = Peers::load();
    let user = peers.get("PEERS_USER").to_owned();
    let inbox = peers.maildir(&user, None);
    let source = SealedSource::new(
        Some(peers.imap(TlsMode::Implicit)),
        &user,
        peers.get("PEERS_PASSWORD"),
        policy(true, &["INBOX"]),
    )
    .await;
    let proxy = start_proxy(ImapProxyConfig::default(), source).await;
    let (r, _) = run_app(
        "idle",
        proxy.addr.port(),
        json!({ "marker": marker(), "maildir": inbox }),
    )
    .await;
    assert_eq!(r["idle_cont"], "+ idling");
    let seen: Vec<&str> = r["idle_seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        seen.last()
            .is_some_and(|l| l.starts_with("* ") && l.ends_with(" EXISTS")),
        "{seen:?}"
    );
    assert!(
        r["idle_done"]
            .as_str()
            .unwrap()
            .contains(" OK Idle completed"),
        "{}",
        r["idle_done"]
    );
    assert_eq!(r["idle2_cont"], "+ idling");
    let end = r["idle2_end"].as_array().unwrap();
    assert!(
        end.last()
            .unwrap()
            .as_str()
            .unwrap()
            .ends_with(" BAD Expected DONE; IDLE ended"),
        "{end:?}"
    );
    assert!(
        r["noop_after"]["tagged"]
            .as_str()
            .unwrap()
            .starts_with("OK")
    );
    let text = proxy.metrics_text();
    assert!(
        text.contains("mailcred_imap_denials_total{reason=\"idle_not_done\"} 1"),
        "{text}"
    );
    proxy.stop().await;
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn writable_policy_passes_writes_only_to_allowed_mailboxes() {
    let peers = Peers::load();
    let user = peers.get("PEERS_USER2").to_owned();
    peers.maildir(&user, None);
    let source = SealedSource::new(
        Some(peers.imap(TlsMode::Starttls)),
        &user,
        peers.get("PEERS_PASSWORD2"),
        policy(false, &["INBOX", "Work*"]),
    )
    .await;
    let proxy = start_proxy(ImapProxyConfig::default(), source).await;
    let (r, _) = run_app("writable", proxy.addr.port(), json!({ "marker": marker() })).await;
    let caps = r["capability"]["data"][0].as_str().unwrap();
    assert!(caps.ends_with("UIDPLUS MOVE"), "{caps}");
    assert_eq!(r["append"]["typ"], "OK", "{}", r["append"]);
    assert_eq!(r["appended_ok"], true, "the 1 MiB APPEND arrived intact");
    assert!(
        r["append_secret"]["tagged"]
            .as_str()
            .unwrap()
            .starts_with("NO [NOPERM]")
    );
    assert!(
        r["create"]["tagged"].as_str().unwrap().starts_with("OK"),
        "{}",
        r["create"]
    );
    assert!(
        r["create_secret"]["tagged"]
            .as_str()
            .unwrap()
            .starts_with("NO [NOPERM]")
    );
    assert_eq!(r["select"]["typ"], "OK", "{}", r["select"]);
    assert!(
        r["select_untagged"].to_string().contains("READ-WRITE"),
        "{}",
        r["select_untagged"]
    );
    for k in ["store", "copy", "move", "rename", "delete"] {
        assert!(
            r[k]["tagged"].as_str().unwrap().starts_with("OK"),
            "{k}: {}",
            r[k]
        );
    }
    assert!(
        r["copy_secret"]["tagged"]
            .as_str()
            .unwrap()
            .starts_with("NO [NOPERM]")
    );
    assert!(
        r["status_work"]["untagged"][0]
            .as_str()
            .unwrap()
            .contains("MESSAGES 2"),
        "{}",
        r["status_work"]
    );
    assert!(
        r["setacl"]["tagged"]
            .as_str()
            .unwrap()
            .starts_with("NO [NOPERM]")
    );
    proxy.stop().await;
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn bad_input_after_login_keeps_upstream_sane() {
    let peers = Peers::load();
    let user = peers.get("PEERS_USER2").to_owned();
    let inbox = peers.maildir(&user, None);
    peers.maildir(&user, Some("Entw&APw-rfe"));
    let source = SealedSource::new(
        Some(peers.imap(TlsMode::Implicit)),
        &user,
        peers.get("PEERS_PASSWORD2"),
        policy(false, &["INBOX", "Entwürfe"]),
    )
    .await;
    let proxy = start_proxy(ImapProxyConfig::default(), source).await;

    // 10,000 pipelined commands through dovecot, answered in order.
    let mut c = logged_in(&proxy).await;
    let mut batch = Vec::new();
    for i in 0..10_000 {
        batch.extend_from_slice(format!("p{i} NOOP\r\n").as_bytes());
    }
    c.send(&batch).await;
    for i in 0..10_000 {
        let line = c.line().await.unwrap();
        assert!(line.starts_with(&format!("p{i} OK")), "{line}");
    }
    // An over-long line after login: BAD, and the upstream session still works.
    let mut long = b"q1 SELECT ".to_vec();
    long.resize(100 * 1024, b'x');
    long.extend_from_slice(b"\r\n");
    c.send(&long).await;
    assert!(c.line().await.unwrap().starts_with("* BAD [TOOBIG]"));
    // Modified UTF-7: the allowed "Entwürfe" by its wire name; raw 8-bit refused.
    let r = c.cmd("q2", "SELECT Entw&APw-rfe").await;
    assert!(last(&r).starts_with("q2 OK"), "{r:?}");
    let r = c.cmd("q3", "LIST \"\" *").await;
    assert!(r.iter().any(|l| l.ends_with("Entw&APw-rfe")), "{r:?}");
    c.send(b"q4 SELECT {9}\r\n").await;
    assert_eq!(c.line().await.unwrap(), "+ Ready for literal data");
    c.send(b"Entw\xfcrfe\r\n").await;
    assert_eq!(
        c.line().await.unwrap(),
        "q4 BAD Invalid mailbox name (modified UTF-7 expected)"
    );
    // Literals the application sends (synchronizing) reach dovecot (as LITERAL+ there).
    c.send(b"q5 SELECT {5}\r\n").await;
    assert_eq!(c.line().await.unwrap(), "+ Ready for literal data");
    c.send(b"INBOX\r\n").await;
    let r = c.until_tagged("q5").await;
    assert!(last(&r).starts_with("q5 OK [READ-WRITE]"), "{r:?}");
    let subject = "Gr\u{fc}\u{df}e".as_bytes();
    c.send(format!("q6 SEARCH CHARSET UTF-8 SUBJECT {{{}}}\r\n", subject.len()).as_bytes())
        .await;
    assert_eq!(c.line().await.unwrap(), "+ Ready for literal data");
    c.send(subject).await;
    c.send(b"\r\n").await;
    let r = c.until_tagged("q6").await;
    assert_eq!(r[0], "* SEARCH", "{r:?}");
    assert!(last(&r).starts_with("q6 OK"), "{r:?}");
    drop(c);

    // A client that vanishes in the middle of an APPEND literal: the half message is not stored.
    let tag = marker();
    let mut c = logged_in(&proxy).await;
    let head = format!("Subject: vanish {tag}\r\n\r\n");
    c.send(b"v1 APPEND INBOX {100000}\r\n").await;
    assert_eq!(c.line().await.unwrap(), "+ Ready for literal data");
    c.send(head.as_bytes()).await;
    c.send(&[b'y'; 5000]).await;
    drop(c);
    let mut d = logged_in(&proxy).await;
    d.cmd("v2", "SELECT INBOX").await;
    let r = d
        .cmd("v3", &format!("SEARCH SUBJECT \"vanish {tag}\""))
        .await;
    assert_eq!(
        r[0], "* SEARCH",
        "the partial APPEND must not be stored: {r:?}"
    );
    let _ = inbox;
    proxy.stop().await;
}
