//! Account-set mode against real dovecot (e2e/peers): one proxy, two accounts of one
//! directory (the peers' two users). Each LOGIN sees only its own account's mailbox, a
//! removed account is refused at once with the wrong-token reply and its open session ends,
//! and an unknown account and a wrong token get byte-identical replies.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use mailcred_core::MailPassword;
use mailcred_core::crd::TlsMode;
use mailcred_core::credential::CredentialSource;
use mailcred_core::testkit::{StaticDirectory, StaticSource, TestCredential};
use mailcred_imap::ImapProxyConfig;

const TOKEN: &str = "dovecot-app-token-2718";

fn marker(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{label}{nanos}")
}

/// `user`'s INBOX maildir, made as dovecot would (owned by its uid 5000).
fn inbox(root: &str, user: &str) -> PathBuf {
    let home = Path::new(root).join(user);
    let dir = home.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::os::unix::fs::chown(dir.join(sub), Some(5000), Some(5000)).unwrap();
    }
    for p in [&home, &dir] {
        std::os::unix::fs::chown(p, Some(5000), Some(5000)).unwrap();
    }
    dir
}

fn deliver(maildir: &Path, subject: &str) {
    let name = format!("{subject}.accounts.test");
    let msg = format!("From: s@example.test\r\nSubject: {subject}\r\n\r\nhello\r\n");
    let tmp = maildir.join("tmp").join(&name);
    std::fs::write(&tmp, msg).unwrap();
    std::os::unix::fs::chown(&tmp, Some(5000), Some(5000)).unwrap();
    std::fs::rename(&tmp, maildir.join("new").join(&name)).unwrap();
}

fn account(
    env: &std::collections::HashMap<String, String>,
    name: &str,
    user: &str,
    password: &str,
) -> Arc<dyn CredentialSource> {
    let ca = std::fs::read_to_string(&env["PEERS_CA_PEM"]).unwrap();
    let credential = TestCredential::new(NS, name)
        .username(user)
        .imap_endpoint(endpoint(
            &env["PEERS_HOST"],
            env["PEERS_IMAP_TLS_PORT"].parse().unwrap(),
            TlsMode::Implicit,
            Some(ca),
        ))
        .imap_policy(policy(true, &["INBOX"]))
        .usable(password);
    Arc::new(StaticSource::new(credential))
}

/// Message numbers SEARCH finds for `subject` in INBOX.
async fn search(c: &mut Client, tag: &str, subject: &str) -> Vec<String> {
    let r = c.cmd(tag, &format!("SEARCH SUBJECT \"{subject}\"")).await;
    assert!(last(&r).starts_with(&format!("{tag} OK")), "{r:?}");
    r.iter()
        .filter_map(|l| l.strip_prefix("* SEARCH"))
        .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// The raw bytes the proxy sent for one login attempt on a new connection.
async fn login_bytes(proxy: &RunningProxy, user: &str, password: &str) -> Vec<u8> {
    let mut c = Client::connect(proxy.addr).await;
    let start = c.transcript.len();
    c.cmd("x1", &format!("LOGIN \"{user}\" \"{password}\""))
        .await;
    c.transcript[start..].to_vec()
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run with --include-ignored"]
async fn each_login_sees_only_its_own_accounts_mailbox() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let env = peers_env();
    let (user_a, user_b) = (env["PEERS_USER"].clone(), env["PEERS_USER2"].clone());
    let root = env["PEERS_MAILDIR_ROOT"].clone();
    let (subject_a, subject_b) = (marker("onlyalice"), marker("onlybob"));
    deliver(&inbox(&root, &user_a), &subject_a);
    deliver(&inbox(&root, &user_b), &subject_b);

    let dir = Arc::new(StaticDirectory::new());
    dir.insert(
        "alice",
        account(&env, "alice", &user_a, &env["PEERS_PASSWORD"]),
    );
    dir.insert(
        "bob",
        account(&env, "bob", &user_b, &env["PEERS_PASSWORD2"]),
    );
    let config = ImapProxyConfig {
        local_token: Some(MailPassword::new(TOKEN.into()).unwrap()),
        ..ImapProxyConfig::default()
    };
    let proxy = start_accounts_proxy(config, dir.clone()).await;

    let mut sessions = Vec::new();
    for (account, own, other) in [
        ("alice", &subject_a, &subject_b),
        ("bob", &subject_b, &subject_a),
    ] {
        let mut c = Client::connect(proxy.addr).await;
        let r = c.cmd("a1", &format!("LOGIN {account} {TOKEN}")).await;
        assert!(last(&r).starts_with("a1 OK"), "{account}: {r:?}");
        let r = c.cmd("a2", "EXAMINE INBOX").await;
        assert!(last(&r).starts_with("a2 OK"), "{account}: {r:?}");
        assert_eq!(
            search(&mut c, "a3", own).await.len(),
            1,
            "{account} sees its own message"
        );
        assert!(
            search(&mut c, "a4", other).await.is_empty(),
            "{account} never sees the other's"
        );
        sessions.push(c);
    }
    let log = std::fs::read_to_string(&env["PEERS_DOVECOT_LOG"]).unwrap_or_default();
    for user in [&user_a, &user_b] {
        assert!(
            log.contains(&format!("Login: user=<{user}>")),
            "dovecot logged {user}'s login"
        );
    }

    // An unknown account and a wrong token: byte-identical replies.
    let unknown = login_bytes(&proxy, "nobody", TOKEN).await;
    let wrong = login_bytes(&proxy, "alice", "not-the-token").await;
    assert_eq!(
        String::from_utf8_lossy(&unknown),
        "x1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
    );
    assert_eq!(unknown, wrong);

    // Removing bob: refused at once, with the same bytes, and bob's open session ends.
    let removed = Instant::now();
    dir.remove("bob");
    assert_eq!(login_bytes(&proxy, "bob", TOKEN).await, unknown);
    let mut bob = sessions.pop().unwrap();
    let bye = bob.line().await;
    assert_eq!(
        bye.as_deref(),
        Some("* BYE [UNAVAILABLE] This account is no longer available")
    );
    assert!(
        removed.elapsed() < Duration::from_millis(1500),
        "{:?}",
        removed.elapsed()
    );
    // alice's session goes on.
    let mut alice = sessions.pop().unwrap();
    assert_eq!(search(&mut alice, "a5", &subject_a).await.len(), 1);
    let r = alice.cmd("a6", "LOGOUT").await;
    assert!(last(&r).starts_with("a6 OK"), "{r:?}");
    proxy.stop().await;
}
