//! The proxy against real dovecot (e2e/peers), driven by real clients (python imaplib, curl)
//! as the application. Each test seals its credential with the local KMS provider; the proxy
//! opens it, logs in to dovecot over verified TLS and enforces the policy.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use mailcred_core::crd::{TlsMode, UpstreamEndpoint};
use mailcred_core::testkit::process_logs;
use mailcred_imap::ImapProxyConfig;
use serde_json::{Value, json};

const APP_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/app/imap_app.py");

struct Peers(HashMap<String, String>);

impl Peers {
    fn load() -> Self {
        Self(peers_env())
    }
    fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from the peers env file"))
    }
    fn imap(&self, tls: TlsMode) -> UpstreamEndpoint {
        let port_key = match tls {
            TlsMode::Implicit => "PEERS_IMAP_TLS_PORT",
            _ => "PEERS_IMAP_STARTTLS_PORT",
        };
        let ca = std::fs::read_to_string(self.get("PEERS_CA_PEM")).unwrap();
        endpoint(
            self.get("PEERS_HOST"),
            self.get(port_key).parse().unwrap(),
            tls,
            Some(ca),
        )
    }
    /// The user's maildir (created as dovecot would, so tests can deliver before a login).
    fn maildir(&self, user: &str, folder: Option<&str>) -> PathBuf {
        let home = Path::new(self.get("PEERS_MAILDIR_ROOT")).join(user);
        let mut dir = home.join("Maildir");
        if let Some(f) = folder {
            dir = dir.join(format!(".{f}"));
        }
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mut p = dir.join("cur");
        while p.starts_with(&home) {
            std::os::unix::fs::chown(&p, Some(5000), Some(5000)).unwrap();
            if !p.pop() {
                break;
            }
        }
        for sub in ["new", "tmp"] {
            std::os::unix::fs::chown(dir.join(sub), Some(5000), Some(5000)).unwrap();
        }
        dir
    }
    fn dovecot_log(&self) -> String {
        std::fs::read_to_string(self.get("PEERS_DOVECOT_LOG")).unwrap()
    }
}

/// Everything the proxy logs in this test binary, at every level (rustls' `log` records
/// included): no password may appear in it.
fn logs_text() -> String {
    process_logs().text()
}

fn marker() -> String {
    format!(
        "mc{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    )
}

/// Runs the python application scenario; returns its JSON report and every byte it received.
async fn run_app(scenario: &str, port: u16, mut args: Value) -> (Value, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let transcript = dir.path().join("transcript");
    args["transcript_path"] = json!(transcript.to_str().unwrap());
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("python3")
            .arg(APP_SCRIPT)
            .arg(scenario)
            .arg(port.to_string())
            .arg(args.to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the python app finishes")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "bad report ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(
        report["error"].is_null(),
        "python app failed: {}",
        report["error"]
    );
    let bytes = std::fs::read(&transcript).unwrap_or_default();
    (report, bytes)
}

/// Writes a message into a maildir's new/; returns its bytes.
fn deliver(maildir: &Path, subject: &str, body_len: usize) -> Vec<u8> {
    let name = format!("{}.{}.test", marker(), body_len);
    let mut msg = format!(
        "From: sender@example.test\r\nTo: app@example.test\r\nSubject: {subject}\r\nMessage-ID: <{name}@example.test>\r\n\r\n"
    )
    .into_bytes();
    let line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n";
    while msg.len() < body_len {
        msg.extend_from_slice(line);
    }
    let tmp = maildir.join("tmp").join(&name);
    std::fs::write(&tmp, &msg).unwrap();
    std::os::unix::fs::chown(&tmp, Some(5000), Some(5000)).unwrap();
    std::fs::rename(&tmp, maildir.join("new").join(&name)).unwrap();
    msg
}

fn sha256_hex(data: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(data)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn refused(report: &Value, name: &str) -> String {
    report["refused"][name]["tagged"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn assert_no_password(password: &str, what: &str, text: &[u8]) {
    let hay = String::from_utf8_lossy(text);
    assert!(!hay.contains(password), "the password appears in {what}");
}

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

async fn logged_in(proxy: &RunningProxy) -> Client {
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("l1", "LOGIN app x").await;
    assert!(last(&r).starts_with("l1 OK [CAPABILITY "), "{r:?}");
    c
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

/// Tests that kick or stop the rotate user's dovecot processes run one at a time.
static ROTATE_USER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
