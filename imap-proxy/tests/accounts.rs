//! Account-set mode against a scripted upstream: LOGIN / AUTHENTICATE PLAIN pick the account,
//! the session uses that account's credential, every refusal reads the same, and a session
//! whose account goes away ends within about a second.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::scripted::{self, Received, Script};
use common::*;
use mailcred_core::MailPassword;
use mailcred_core::crd::TlsMode;
use mailcred_core::credential::CredentialSource;
use mailcred_core::testkit::{
    FailingSource, StaticDirectory, StaticSource, TestCredential, process_logs,
};
use mailcred_imap::{ImapMetrics, ImapProxy, ImapProxyConfig};
use proptest::prelude::*;

const TOKEN: &str = "imap-app-token-31415926";
const FAILED: &str = "NO [AUTHENTICATIONFAILED] Invalid credentials";

fn config() -> ImapProxyConfig {
    ImapProxyConfig {
        local_token: Some(MailPassword::new(TOKEN.into()).unwrap()),
        ..ImapProxyConfig::default()
    }
}

/// An upstream that accepts everything and names, in its LOGIN reply, the user it saw.
fn script() -> Script {
    Arc::new(|r: &Received| match r.name.as_str() {
        "EXAMINE" | "SELECT" => {
            format!("* 1 EXISTS\r\n{} OK [READ-ONLY] examined\r\n", r.tag).into_bytes()
        }
        _ => scripted::ok(r),
    })
}

fn account(name: &str, port: u16, ca: &str) -> Arc<dyn CredentialSource> {
    let credential = TestCredential::new(NS, name)
        .username(&format!("{name}@example.test"))
        .imap_endpoint(endpoint(
            "localhost",
            port,
            TlsMode::Implicit,
            Some(ca.to_owned()),
        ))
        .imap_policy(policy(true, &["INBOX"]))
        .usable(&format!("upstream-password-of-{name}"));
    Arc::new(StaticSource::new(credential))
}

/// A directory with alice and bob (both on the scripted upstream) and a proxy serving it.
async fn setup() -> (
    Arc<StaticDirectory>,
    RunningProxy,
    scripted::ScriptedUpstream,
) {
    let upstream = scripted::start("IMAP4rev1 LITERAL+", script()).await;
    let dir = Arc::new(StaticDirectory::new());
    dir.insert("alice", account("alice", upstream.port, &upstream.ca_pem));
    dir.insert("bob", account("bob", upstream.port, &upstream.ca_pem));
    let proxy = start_accounts_proxy(config(), dir.clone()).await;
    (dir, proxy, upstream)
}

fn plain(authzid: &str, user: &str, password: &str) -> String {
    STANDARD.encode(format!("{authzid}\0{user}\0{password}"))
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The tagged reply (without the tag) to each login form, each on a new connection.
async fn login_replies(proxy: &RunningProxy, user: &str, password: &str) -> Vec<String> {
    let mut out = Vec::new();
    let forms = [
        format!("LOGIN {} {}", quoted(user), quoted(password)),
        format!("AUTHENTICATE PLAIN {}", plain("", user, password)),
    ];
    for form in forms {
        let mut c = Client::connect(proxy.addr).await;
        let r = c.cmd("t1", &form).await;
        out.push(last(&r).trim_start_matches("t1 ").to_owned());
    }
    // AUTHENTICATE without SASL-IR: the response on its own line.
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"t2 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await.as_deref(), Some("+ "));
    c.send(format!("{}\r\n", plain("", user, password)).as_bytes())
        .await;
    let r = c.until_tagged("t2").await;
    out.push(last(&r).trim_start_matches("t2 ").to_owned());
    out
}

#[test]
fn account_mode_needs_a_local_token() {
    let proxy = ImapProxy::new(
        ImapProxyConfig::default(),
        Arc::new(FailingSource::kms_down()),
        ImapMetrics::unregistered(),
    );
    let err = proxy
        .with_accounts(Arc::new(StaticDirectory::new()))
        .err()
        .expect("refused without a token");
    assert!(err.to_string().contains("needs a local token"), "{err}");
    assert!(config().check_account_mode().is_ok());
}

#[tokio::test]
async fn login_picks_the_account_and_the_session_uses_its_credential() {
    let (_dir, proxy, _upstream) = setup().await;
    for (user, form) in [
        ("alice", format!("LOGIN alice {TOKEN}")),
        (
            "bob",
            format!("AUTHENTICATE PLAIN {}", plain("bob", "bob", TOKEN)),
        ),
    ] {
        let mut c = Client::connect(proxy.addr).await;
        let r = c.cmd("a1", &form).await;
        assert!(last(&r).starts_with("a1 OK"), "{user}: {r:?}");
        let r = c.cmd("a2", "EXAMINE INBOX").await;
        assert!(last(&r).starts_with("a2 OK"), "{user}: {r:?}");
        // The account's own policy: only INBOX.
        let r = c.cmd("a3", "EXAMINE Archive").await;
        assert!(last(&r).starts_with("a3 NO [NOPERM]"), "{r:?}");
        let r = c.cmd("a4", "LOGOUT").await;
        assert!(last(&r).starts_with("a4 OK"), "{r:?}");
    }
    let text = proxy.metrics_text();
    assert!(
        text.contains("mailcred_imap_account_logins_total{outcome=\"accepted\"} 2"),
        "{text}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn every_refusal_reads_the_same() {
    let (dir, proxy, _upstream) = setup().await;
    dir.remove("bob");
    let mut replies = Vec::new();
    for (user, password) in [
        ("alice", "wrong-token"),
        ("nobody", TOKEN),
        ("nobody", "wrong-token"),
        ("bob", TOKEN), // removed a moment ago
        ("", TOKEN),
    ] {
        replies.extend(login_replies(&proxy, user, password).await);
    }
    let mut c = Client::connect(proxy.addr).await;
    let r = c
        .cmd(
            "t1",
            &format!("AUTHENTICATE PLAIN {}", plain("bob", "alice", TOKEN)),
        )
        .await;
    replies.push(last(&r).trim_start_matches("t1 ").to_owned());
    for r in &replies {
        assert_eq!(r, FAILED);
    }
    let text = proxy.metrics_text();
    for (outcome, n) in [
        ("wrong_token", 6),
        ("unknown_account", 9),
        ("wrong_authzid", 1),
    ] {
        let line = format!("mailcred_imap_account_logins_total{{outcome=\"{outcome}\"}} {n}");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(
        !text.contains("alice") && !text.contains("nobody"),
        "no account label"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_open_session_of_a_removed_account_ends_within_a_second() {
    let (dir, proxy, _upstream) = setup().await;
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a1", &format!("LOGIN alice {TOKEN}")).await;
    assert!(last(&r).starts_with("a1 OK"), "{r:?}");
    let r = c.cmd("a2", "EXAMINE INBOX").await;
    assert!(last(&r).starts_with("a2 OK"), "{r:?}");
    let removed = Instant::now();
    dir.remove("alice");
    // The application sends nothing: the tick ends the session.
    let bye = c.line().await;
    let took = removed.elapsed();
    assert_eq!(
        bye.as_deref(),
        Some("* BYE [UNAVAILABLE] This account is no longer available")
    );
    assert!(took < Duration::from_millis(1500), "ended after {took:?}");
    assert!(c.closed().await);
    // And it cannot log in again.
    assert_eq!(login_replies(&proxy, "alice", TOKEN).await, [FAILED; 3]);
    let text = proxy.metrics_text();
    assert!(
        text.contains("mailcred_imap_sessions_total{outcome=\"account_unavailable\"} 1"),
        "{text}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_account_whose_source_fails_gets_the_credential_unavailable_reply() {
    let (dir, proxy, _upstream) = setup().await;
    dir.insert("alice", Arc::new(FailingSource::kms_down()));
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a1", &format!("LOGIN alice {TOKEN}")).await;
    assert_eq!(
        last(&r),
        "a1 NO [UNAVAILABLE] Credential unavailable (kms_unreachable); try again later",
        "{r:?}"
    );
    proxy.stop().await;
}

/// Session audit lines name the account's credential and upstream user, also for a session
/// its account's removal ended; the token and the upstream passwords are in no log line.
#[tokio::test]
async fn audit_lines_name_the_account() {
    // Everything this test binary logs: the log is shared.
    let logs = process_logs();
    let upstream = scripted::start("IMAP4rev1 LITERAL+", script()).await;
    let dir = Arc::new(StaticDirectory::new());
    // Names no other test of this binary uses: the log is shared.
    dir.insert("carol", account("carol", upstream.port, &upstream.ca_pem));
    dir.insert("dave", account("dave", upstream.port, &upstream.ca_pem));
    let proxy = start_accounts_proxy(config(), dir.clone()).await;
    let mut a = Client::connect(proxy.addr).await;
    assert!(last(&a.cmd("a1", &format!("LOGIN carol {TOKEN}")).await).starts_with("a1 OK"));
    assert!(last(&a.cmd("a2", "LOGOUT").await).starts_with("a2 OK"));
    drop(a);
    let mut b = Client::connect(proxy.addr).await;
    assert!(last(&b.cmd("b1", &format!("LOGIN dave {TOKEN}")).await).starts_with("b1 OK"));
    dir.remove("dave");
    assert!(b.closed().await);
    assert_eq!(login_replies(&proxy, "carol", "wrong").await, [FAILED; 3]);
    let sessions = || -> Vec<(String, String, String)> {
        let text = logs.text();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "audit" && v["event"] == "imap_session")
            .filter(|v| matches!(v["credential"].as_str(), Some("apps/carol" | "apps/dave")))
            .map(|v| {
                let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (
                    field("credential"),
                    field("upstream_user"),
                    field("outcome"),
                )
            })
            .collect()
    };
    // A session's line is written once its connection is shut down: wait for both.
    for _ in 0..100 {
        if sessions().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.stop().await;
    let want = [
        ("apps/carol", "carol@example.test", "logout"),
        ("apps/dave", "dave@example.test", "account_unavailable"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(sessions(), want);
    let text = logs.text();
    for secret in [
        TOKEN,
        "upstream-password-of-carol",
        "upstream-password-of-dave",
    ] {
        assert!(!text.contains(secret), "{secret} in the logs");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Whatever the name and the (wrong) token, a failed login reads the same whether the
    /// account exists or not, in all three forms.
    #[test]
    fn a_failed_login_does_not_tell_whether_the_account_exists(
        name in "[a-z0-9][a-z0-9.-]{0,40}",
        token in "[!#-\\[\\]-~]{1,64}",
    ) {
        prop_assume!(token != TOKEN);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (exists, missing) = rt.block_on(async {
            let upstream = scripted::start("IMAP4rev1", script()).await;
            let mut out = Vec::new();
            for present in [true, false] {
                let dir = Arc::new(StaticDirectory::new());
                if present {
                    dir.insert(&name, account("x", upstream.port, &upstream.ca_pem));
                }
                let proxy = start_accounts_proxy(config(), dir).await;
                out.push(login_replies(&proxy, &name, &token).await);
                proxy.stop().await;
            }
            (out[0].clone(), out[1].clone())
        });
        prop_assert_eq!(&exists, &missing);
        prop_assert_eq!(&exists[0], FAILED);
    }
}
