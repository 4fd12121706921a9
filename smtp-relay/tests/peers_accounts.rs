//! Account-set mode against the real peers: one relay, two accounts of one directory (the
//! peers' two users), python smtplib as the application picking the account with AUTH, and
//! postfix's log as the witness of which user each message was submitted as.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailcred_core::accounts::AccountDirectory;
use mailcred_core::crd::TlsMode;
use mailcred_core::credential::CredentialSource;
use mailcred_core::testkit::{StaticDirectory, StaticSource, TestCredential};
use mailcred_smtp::{RelayConfig, RelayMetrics, SmtpRelay};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "peers-app-token-7f3a";

fn peers() -> HashMap<String, String> {
    let path = std::env::var("MAILCRED_PEERS_ENV")
        .expect("MAILCRED_PEERS_ENV is not set (needs e2e/peers/start.sh)");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn unique(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{label}-{nanos}")
}

fn account(
    env: &HashMap<String, String>,
    name: &str,
    user: &str,
    password: &str,
) -> Arc<dyn CredentialSource> {
    let ca = std::fs::read_to_string(&env["PEERS_CA_PEM"]).unwrap();
    let credential = TestCredential::new("ns", name)
        .username(user)
        .smtp(
            &env["PEERS_HOST"],
            env["PEERS_SMTP_STARTTLS_PORT"].parse().unwrap(),
            TlsMode::Starttls,
        )
        .ca_pem(&ca)
        .usable(password);
    Arc::new(StaticSource::new(credential))
}

const SEND_PY: &str = r#"
import json, smtplib, sys
port, account, token, sender, rcpt, subject = sys.argv[1:7]
msg = 'From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nhello\r\n' % (sender, rcpt, subject)
s = smtplib.SMTP('127.0.0.1', int(port), local_hostname='app.local', timeout=60)
s.ehlo()
try:
    s.login(account, token)
except smtplib.SMTPAuthenticationError as e:
    print(json.dumps({'auth': e.smtp_code, 'text': e.smtp_error.decode()})); sys.exit(0)
try:
    s.sendmail(sender, [rcpt], msg)
    print(json.dumps({'auth': 235, 'code': 250}))
except smtplib.SMTPResponseException as e:
    print(json.dumps({'auth': 235, 'code': e.smtp_code, 'text': e.smtp_error.decode()}))
s.quit()
"#;

async fn send(
    port: u16,
    account: &str,
    token: &str,
    sender: &str,
    rcpt: &str,
    subject: &str,
) -> serde_json::Value {
    let args: Vec<String> = [&port.to_string(), account, token, sender, rcpt, subject]
        .iter()
        .map(|s| s.to_string())
        .collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("python3")
            .arg("-c")
            .arg(SEND_PY)
            .args(&args)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "smtplib: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    })
    .await
    .unwrap()
}

/// How many submissions postfix logged as authenticated by `user`.
fn submissions_by(env: &HashMap<String, String>, user: &str) -> usize {
    let log = std::fs::read_to_string(&env["PEERS_POSTFIX_LOG"]).unwrap_or_default();
    let needle = format!("sasl_username={user}");
    log.lines()
        .filter(|l| l.ends_with(&needle) || l.contains(&format!("{needle},")))
        .count()
}

async fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run with --include-ignored"]
async fn two_accounts_send_as_themselves_through_one_relay() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let env = peers();
    let (user_a, user_b) = (env["PEERS_USER"].clone(), env["PEERS_USER2"].clone());
    let dir = Arc::new(StaticDirectory::new());
    dir.insert(
        "alice",
        account(&env, "alice", &user_a, &env["PEERS_PASSWORD"]),
    );
    dir.insert(
        "bob",
        account(&env, "bob", &user_b, &env["PEERS_PASSWORD2"]),
    );
    let metrics = RelayMetrics::unregistered();
    let config = RelayConfig {
        local_token: Some(TOKEN.into()),
        ..RelayConfig::default()
    };
    let relay = SmtpRelay::new(
        config,
        Arc::new(mailcred_core::local_login::NoSource),
        metrics.clone(),
    )
    .with_accounts(dir.clone() as Arc<dyn AccountDirectory>)
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    tokio::spawn(relay.serve(listener, stop.clone()));

    let (before_a, before_b) = (submissions_by(&env, &user_a), submissions_by(&env, &user_b));
    // A, B, A: each message is submitted as its own account's user, and A's pooled
    // connection is still A's after B sent (one pool per account, never shared).
    for (account, user, a, b) in [
        ("alice", &user_a, 1, 0),
        ("bob", &user_b, 1, 1),
        ("alice", &user_a, 2, 1),
    ] {
        let r = send(port, account, TOKEN, user, user, &unique(account)).await;
        assert_eq!(r["code"], 250, "{account}: {r}");
        // postfix logs the authenticated user of every message it accepts.
        let counts = || {
            (
                submissions_by(&env, &user_a) - before_a,
                submissions_by(&env, &user_b) - before_b,
            )
        };
        assert!(
            wait_for(|| counts() == (a, b)).await,
            "after {account}: submissions as ({user_a}, {user_b}) = {:?}, want ({a}, {b})",
            counts()
        );
    }
    assert_eq!(
        metrics.upstream_pools_built.get(),
        2,
        "one pool per account, A's kept while B sent"
    );
    // Sending as the other account's user is refused by the account's own policy.
    let r = send(port, "alice", TOKEN, &user_b, &user_b, &unique("cross")).await;
    assert_eq!(r["code"], 550, "{r}");

    // Unknown account, wrong token, and an account removed a moment ago: the same reply.
    let unknown = send(port, "nobody", TOKEN, &user_a, &user_a, "x").await;
    let wrong = send(port, "alice", "not-the-token", &user_a, &user_a, "x").await;
    dir.remove("bob");
    let removed = send(port, "bob", TOKEN, &user_b, &user_b, "x").await;
    assert_eq!(unknown["auth"], 535, "{unknown}");
    assert_eq!(unknown, wrong);
    assert_eq!(unknown, removed);
    stop.cancel();
}
