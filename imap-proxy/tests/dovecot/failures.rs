//! Upstream failures (drops, untrusted certificates, silence), idle applications and
//! synchronizing literals upstream.

use std::time::Duration;

use crate::common::*;
use crate::support::*;
use mailcred_core::crd::TlsMode;
use mailcred_imap::ImapProxyConfig;

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn upstream_dropping_mid_session_gives_bye() {
    let _one_at_a_time = ROTATE_USER.lock().await;
    let peers = Peers::load();
    let user = peers.get("PEERS_ROTATE_USER").to_owned();
    peers.maildir(&user, None);
    let source = SealedSource::new(
        Some(peers.imap(TlsMode::Implicit)),
        &user,
        peers.get("PEERS_ROTATE_PASSWORD"),
        policy(true, &["INBOX"]),
    )
    .await;
    let proxy = start_proxy(ImapProxyConfig::default(), source).await;
    let mut c = logged_in(&proxy).await;
    c.cmd("s1", "SELECT INBOX").await;
    let kick = std::process::Command::new("doveadm")
        .args(["-c", peers.get("PEERS_DOVECOT_CONFIG"), "kick", &user])
        .output()
        .unwrap();
    assert!(
        kick.status.success(),
        "{}",
        String::from_utf8_lossy(&kick.stderr)
    );
    let mut lines = Vec::new();
    while let Some(l) = c.line().await {
        lines.push(l);
    }
    assert!(lines.iter().any(|l| l.starts_with("* BYE")), "{lines:?}");
    proxy.stop().await;
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn untrusted_certificate_and_wrong_password_give_no_unavailable() {
    let peers = Peers::load();
    let user = peers.get("PEERS_USER").to_owned();
    // System roots do not include the test CA: verification must fail.
    let mut untrusted = peers.imap(TlsMode::Implicit);
    untrusted.ca_pem = None;
    let source = SealedSource::new(
        Some(untrusted),
        &user,
        peers.get("PEERS_PASSWORD"),
        policy(true, &["INBOX"]),
    )
    .await;
    let proxy = start_proxy(ImapProxyConfig::default(), source).await;
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a1", "LOGIN app x").await;
    assert_eq!(
        last(&r),
        "a1 NO [UNAVAILABLE] Upstream IMAP server unavailable (upstream_tls); try again later"
    );
    proxy.stop().await;

    let source = SealedSource::new(
        Some(peers.imap(TlsMode::Starttls)),
        &user,
        "not-the-password",
        policy(true, &["INBOX"]),
    )
    .await;
    let proxy = start_proxy(ImapProxyConfig::default(), source).await;
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a1", "LOGIN app x").await;
    assert_eq!(
        last(&r),
        "a1 NO [UNAVAILABLE] Upstream IMAP server unavailable (upstream_auth); try again later"
    );
    assert!(!String::from_utf8_lossy(&c.transcript).contains("not-the-password"));
    proxy.stop().await;
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn upstream_that_stops_answering_gives_bye_after_the_bounded_wait() {
    let _one_at_a_time = ROTATE_USER.lock().await;
    let peers = Peers::load();
    let user = peers.get("PEERS_ROTATE_USER").to_owned();
    peers.maildir(&user, None);
    let source = SealedSource::new(
        Some(peers.imap(TlsMode::Implicit)),
        &user,
        peers.get("PEERS_ROTATE_PASSWORD"),
        policy(true, &["INBOX"]),
    )
    .await;
    let config = ImapProxyConfig {
        upstream_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let proxy = start_proxy(config, source).await;
    let mut c = logged_in(&proxy).await;
    c.cmd("s1", "SELECT INBOX").await;
    // Freeze this user's dovecot imap process: it holds the connection but never answers.
    let who = std::process::Command::new("doveadm")
        .args(["-c", peers.get("PEERS_DOVECOT_CONFIG"), "who", "-1", &user])
        .output()
        .unwrap();
    let who = String::from_utf8_lossy(&who.stdout).into_owned();
    let pids: Vec<String> = who
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect();
    assert!(!pids.is_empty(), "no imap process for {user}: {who}");
    let signal = |sig: &str| {
        for pid in &pids {
            std::process::Command::new("kill")
                .args([sig, pid])
                .status()
                .unwrap();
        }
    };
    signal("-STOP");
    c.send(b"s2 NOOP\r\n").await;
    let line = c.line().await;
    signal("-CONT");
    assert_eq!(
        line.as_deref(),
        Some("* BYE [UNAVAILABLE] Upstream server not responding")
    );
    assert!(c.closed().await);
    proxy.stop().await;
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn idle_application_is_logged_out() {
    let peers = Peers::load();
    let user = peers.get("PEERS_USER").to_owned();
    let source = SealedSource::new(
        Some(peers.imap(TlsMode::Implicit)),
        &user,
        peers.get("PEERS_PASSWORD"),
        policy(true, &["INBOX"]),
    )
    .await;
    let config = ImapProxyConfig {
        idle_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let proxy = start_proxy(config, source).await;
    let mut c = logged_in(&proxy).await;
    assert_eq!(
        c.line().await.as_deref(),
        Some("* BYE Autologout; idle for too long")
    );
    assert!(c.closed().await);
    let text = proxy.metrics_text();
    assert!(
        text.contains("mailcred_imap_sessions_total{outcome=\"idle_timeout\"} 1"),
        "{text}"
    );
    proxy.stop().await;
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn synchronizing_literals_upstream_wait_for_continuations() {
    let peers = Peers::load();
    let user = peers.get("PEERS_USER2").to_owned();
    peers.maildir(&user, None);
    let source = SealedSource::new(
        Some(peers.imap(TlsMode::Implicit)),
        &user,
        peers.get("PEERS_PASSWORD2"),
        policy(false, &["INBOX"]),
    )
    .await;
    let config = ImapProxyConfig {
        upstream_literal_plus: false,
        ..Default::default()
    };
    let proxy = start_proxy(config, source).await;
    let mut c = logged_in(&proxy).await;
    let tag = marker();
    // A non-synchronizing APPEND from the application, synchronizing towards dovecot.
    let mut msg = format!("Subject: sync {tag}\r\n\r\n").into_bytes();
    msg.resize(256 * 1024, b'q');
    c.send(format!("y1 APPEND INBOX (\\Seen) {{{}+}}\r\n", msg.len()).as_bytes())
        .await;
    c.send(&msg).await;
    c.send(b"\r\n").await;
    let r = c.until_tagged("y1").await;
    assert!(last(&r).starts_with("y1 OK"), "{r:?}");
    c.cmd("y2", "SELECT INBOX").await;
    c.send(format!("y3 SEARCH SUBJECT {{{}}}\r\n", tag.len() + 5).as_bytes())
        .await;
    assert_eq!(c.line().await.unwrap(), "+ Ready for literal data");
    c.send(format!("sync {tag}\r\n").as_bytes()).await;
    let r = c.until_tagged("y3").await;
    let hits = r[0]
        .strip_prefix("* SEARCH ")
        .unwrap_or_else(|| panic!("{r:?}"));
    let seq = hits.split(' ').next_back().unwrap();
    c.send(format!("y4 FETCH {seq} BODY.PEEK[]\r\n").as_bytes())
        .await;
    let head = c.line().await.unwrap();
    assert_eq!(literal_len(&head), Some(msg.len()), "{head}");
    let body = c.literal(msg.len()).await;
    assert!(body == msg, "the APPENDed message came back different");
    let r = c.until_tagged("y4").await;
    assert!(last(&r).starts_with("y4 OK"), "{r:?}");
    proxy.stop().await;
}
