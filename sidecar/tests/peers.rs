//! The sidecar binary against the real peers (postfix submission + dovecot, e2e/peers): the
//! test seals a credential with the local KMS provider (so the real decrypt path runs), starts
//! `mailcred-sidecar --credential-file`, sends as the application with python smtplib, swaks
//! and curl, and reads the result back from the mailbox over IMAP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mailcred_core::crd::{MailCredential, SmtpPolicy, TlsMode, UpstreamEndpoint};
use mailcred_core::kms::LocalKms;
use mailcred_core::testkit::{PeersEnv, TestCredential, peers_env, write_manifest};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn token(label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{label}-{}-{n}-{nanos}", std::process::id())
}

struct Setup {
    env: PeersEnv,
    dir: tempfile::TempDir,
    kms: LocalKms,
    key_file: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let env = peers_env();
        let dir = tempfile::tempdir().unwrap();
        let kms = LocalKms::generate().unwrap();
        let key_file = dir.path().join("local.key");
        kms.write_new_key_file(&key_file).unwrap();
        Self {
            env,
            dir,
            kms,
            key_file,
        }
    }

    fn e(&self, k: &str) -> &str {
        self.env.get(k)
    }

    fn ca(&self) -> String {
        self.env.ca_pem()
    }

    fn endpoint(&self, implicit: bool) -> UpstreamEndpoint {
        UpstreamEndpoint {
            host: self.e("PEERS_HOST").into(),
            port: self.env.port(if implicit {
                "PEERS_SMTP_TLS_PORT"
            } else {
                "PEERS_SMTP_STARTTLS_PORT"
            }),
            tls: if implicit {
                TlsMode::Implicit
            } else {
                TlsMode::Starttls
            },
            ca_pem: Some(self.ca()),
            insecure: false,
            insecure_reason: None,
        }
    }

    /// Seals `password` for the credential (name "mail" in "ns") and writes it as a file.
    async fn credential_file(
        &self,
        file: &str,
        endpoint: UpstreamEndpoint,
        username: &str,
        password: &str,
        smtp: SmtpPolicy,
    ) -> PathBuf {
        let resource = TestCredential::new("ns", "mail")
            .smtp_endpoint(endpoint)
            .username(username)
            .smtp_policy(smtp)
            .sealed(&self.kms, password)
            .await;
        self.write(file, &resource)
    }

    /// Replaces `file` with `resource` (in one rename: the sidecar never reads half a file).
    fn write(&self, file: &str, resource: &MailCredential) -> PathBuf {
        let path = self.dir.path().join(file);
        write_manifest(resource, &path).unwrap();
        path
    }
}

/// A running `mailcred-sidecar`, killed on drop.
struct Sidecar {
    child: Child,
    port: u16,
    imap: u16,
    admin: u16,
    log: PathBuf,
}

impl Sidecar {
    fn start(setup: &Setup, credential: &Path, extra: &[&str]) -> Self {
        let log = setup.dir.path().join(format!("{}.log", token("sidecar")));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mailcred-sidecar"))
            .args(["--credential-file"])
            .arg(credential)
            .arg("--local-key-file")
            .arg(&setup.key_file)
            .args([
                "--no-aws",
                "--smtp-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--imap-listen",
                "127.0.0.1:0",
                "--file-poll-ms",
                "200",
                "--pod",
                "test-pod",
            ])
            .args(extra)
            .env("RUST_LOG", "trace")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut s = Sidecar {
            child,
            port: 0,
            imap: 0,
            admin: 0,
            log,
        };
        let line = s.wait_log("mailcred sidecar serving");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let port_of = |field: &str| -> u16 {
            let addr: std::net::SocketAddr = v[field].as_str().unwrap().parse().unwrap();
            addr.port()
        };
        s.port = port_of("smtp");
        s.imap = port_of("imap");
        s.admin = port_of("admin");
        s
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for a log line containing `needle`.
    fn wait_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.logs();
            if let Some(l) = text.lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sidecar exited ({status}) before logging {needle:?}:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in sidecar log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn audits(&self) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "audit")
            .collect()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SEND_PY: &str = r#"
import json, smtplib, sys
port, sender, rcpts, path = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(','), sys.argv[4]
data = open(path, 'rb').read()
try:
    s = smtplib.SMTP('127.0.0.1', port, local_hostname='app.local', timeout=60)
    s.ehlo()
    refused = s.sendmail(sender, rcpts, data)
    print(json.dumps({'code': 250, 'refused': {k: [v[0], v[1].decode()] for k, v in refused.items()}}))
    s.quit()
except smtplib.SMTPRecipientsRefused as e:
    k, v = next(iter(e.recipients.items()))
    print(json.dumps({'code': v[0], 'msg': v[1].decode(), 'stage': 'rcpt'}))
except smtplib.SMTPResponseException as e:
    print(json.dumps({'code': e.smtp_code, 'msg': e.smtp_error.decode(errors='replace')}))
"#;

const FETCH_PY: &str = r#"
import imaplib, ssl, sys
port, user, password, ca, needle = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL('localhost', port, ssl_context=ctx)
m.login(user, password)
m.select('INBOX', readonly=True)
typ, data = m.search(None, 'SUBJECT', '"' + needle + '"')
typ, msg = m.fetch(data[0].split()[0], '(BODY.PEEK[TEXT])')
sys.stdout.buffer.write(msg[0][1])
m.logout()
"#;

const IMAP_PY: &str = r#"
import imaplib, ssl, sys
port, user, password, ca, needle = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL('localhost', port, ssl_context=ctx)
m.login(user, password)
m.select('INBOX', readonly=True)
typ, data = m.search(None, 'SUBJECT', '"' + needle + '"')
print(len(data[0].split()))
m.logout()
"#;

#[derive(Debug)]
struct Outcome {
    code: u16,
    msg: String,
}

fn message(from: &str, to: &str, subject: &str, body_bytes: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@app.local>\r\n\r\n"
    )
    .into_bytes();
    while m.len() < body_bytes {
        m.extend_from_slice(
            b"0123456789 0123456789 0123456789 0123456789 0123456789 012345678\r\n",
        );
    }
    m.extend_from_slice(b".leading dot line\r\nend\r\n");
    m
}

fn send_smtplib(sidecar: &Sidecar, dir: &Path, from: &str, to: &[&str], msg: &[u8]) -> Outcome {
    let path = dir.join(token("msg"));
    std::fs::write(&path, msg).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            SEND_PY,
            &sidecar.port.to_string(),
            from,
            &to.join(","),
        ])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|_| panic!("smtplib: {text} {}", String::from_utf8_lossy(&out.stderr)));
    Outcome {
        code: v["code"].as_u64().unwrap() as u16,
        msg: v["msg"].as_str().unwrap_or("").to_string(),
    }
}

/// Messages whose subject contains `needle` in `user`'s INBOX, read over IMAP (implicit TLS).
fn mailbox_count(setup: &Setup, user: &str, password: &str, needle: &str) -> usize {
    let out = Command::new("python3")
        .args([
            "-c",
            IMAP_PY,
            setup.e("PEERS_IMAP_TLS_PORT"),
            user,
            password,
            setup.e("PEERS_CA_PEM"),
            needle,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "imaplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Waits (bounded) until the message is in the mailbox: postfix delivers after its 250.
fn assert_delivered(setup: &Setup, user: &str, password: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while mailbox_count(setup, user, password, needle) == 0 {
        assert!(
            Instant::now() < deadline,
            "{needle} never arrived in {user}'s INBOX"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The postfix log lines of the smtpd session that received message `needle`: proves TLS and
/// the SASL user of that very session.
fn postfix_session_of(setup: &Setup, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(setup.e("PEERS_POSTFIX_LOG")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        // cleanup: "QID: message-id=<needle@app.local>"
        let qid = lines.iter().find_map(|l| {
            l.contains(&format!("message-id=<{needle}@app.local>"))
                .then(|| l.split(": ").nth(1).map(str::to_string))
                .flatten()
        });
        if let Some(qid) = qid {
            let smtpd = lines
                .iter()
                .find(|l| l.contains(&format!("{qid}: client=")) && l.contains("smtpd["))
                .map(|l| {
                    l.split("smtpd[")
                        .nth(1)
                        .unwrap()
                        .split(']')
                        .next()
                        .unwrap()
                        .to_string()
                });
            if let Some(pid) = smtpd {
                let tag = format!("smtpd[{pid}]");
                return lines
                    .iter()
                    .filter(|l| l.contains(&tag))
                    .map(|s| s.to_string())
                    .collect();
            }
        }
        assert!(
            Instant::now() < deadline,
            "message {needle} not in postfix log"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Neither the password nor its base64 forms (AUTH PLAIN / LOGIN on the wire) in any log.
fn assert_no_password(setup: &Setup, sidecar: &Sidecar, password: &str) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let logs = sidecar.logs();
    assert!(!logs.is_empty());
    for user in [setup.e("PEERS_USER"), setup.e("PEERS_ROTATE_USER")] {
        let plain = b64(&format!("\0{user}\0{password}"));
        assert!(!logs.contains(&plain), "AUTH PLAIN in sidecar log");
    }
    assert!(
        !logs.contains(&b64(password)),
        "AUTH LOGIN password in sidecar log"
    );
    assert!(!logs.contains(password), "password in sidecar log");
    let postfix = std::fs::read_to_string(setup.e("PEERS_POSTFIX_LOG")).unwrap();
    assert!(!postfix.contains(password), "password in postfix log");
}

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

fn admin_get(port: u16, path: &str) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}{path}")])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn reqwest_metrics(port: u16) -> String {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
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

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn upstream_permanent_rejection_is_passed_on() {
    let s = Setup::new();
    let user = s.e("PEERS_USER").to_string();
    let pw = s.e("PEERS_PASSWORD").to_string();
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
    let unknown = s.e("PEERS_UNKNOWN_RCPT").to_string();
    let r = send_smtplib(
        &sidecar,
        s.dir.path(),
        &user,
        &[&unknown],
        &message(&user, &unknown, &token("unknown"), 10),
    );
    assert_eq!(r.code, 550, "{r:?}");
    assert!(
        r.msg.contains("5.1.1") && r.msg.contains("upstream refused"),
        "{r:?}"
    );
    assert_eq!(sidecar.audits()[0]["outcome"], "upstream_rejected");
}

async fn temporary_failure(
    s: &Setup,
    file: &Path,
    extra: &[&str],
    code: u16,
    needle: &str,
) -> Sidecar {
    let user = s.e("PEERS_USER").to_string();
    let sidecar = Sidecar::start(s, file, extra);
    let sub = token("tempfail");
    let r = send_smtplib(
        &sidecar,
        s.dir.path(),
        &user,
        &[&user],
        &message(&user, &user, &sub, 10),
    );
    assert_eq!(r.code, code, "{r:?}\n{}", sidecar.logs());
    assert!(r.msg.contains(needle), "{r:?}");
    let log = std::fs::read_to_string(s.e("PEERS_POSTFIX_LOG")).unwrap();
    assert!(!log.contains(sub.as_str()), "nothing accepted upstream");
    sidecar
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn upstream_trouble_is_a_temporary_failure_with_a_reason() {
    let s = Setup::new();
    let user = s.e("PEERS_USER").to_string();
    let pw = s.e("PEERS_PASSWORD").to_string();

    // Upstream down: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut down = s.endpoint(false);
    down.port = closed;
    let f = s
        .credential_file("down.yaml", down, &user, &pw, SmtpPolicy::default())
        .await;
    let c = temporary_failure(&s, &f, &[], 451, "4.4.1").await;
    assert_eq!(c.audits()[0]["reason"], "upstream_unavailable");

    // Certificate not verifiable: no caPem, so the system roots, which do not know the test
    // CA; both TLS modes (implicit TLS and STARTTLS take different paths to the handshake).
    for implicit in [true, false] {
        let mut no_ca = s.endpoint(implicit);
        no_ca.ca_pem = None;
        let f = s
            .credential_file(
                &format!("noca-{implicit}.yaml"),
                no_ca,
                &user,
                &pw,
                SmtpPolicy::default(),
            )
            .await;
        let c = temporary_failure(&s, &f, &[], 454, "4.7.5").await;
        assert_eq!(c.audits()[0]["reason"], "upstream_tls");
    }

    // Wrong password sealed: upstream AUTH fails.
    let f = s
        .credential_file(
            "wrongpw.yaml",
            s.endpoint(false),
            &user,
            "not-the-password",
            SmtpPolicy::default(),
        )
        .await;
    let c = temporary_failure(&s, &f, &[], 454, "authentication failed").await;
    assert!(!c.logs().contains("not-the-password"));

    // KMS failure: the sidecar has another local key than the one sealed with.
    let f = s
        .credential_file(
            "kms.yaml",
            s.endpoint(false),
            &user,
            &pw,
            SmtpPolicy::default(),
        )
        .await;
    let other = s.dir.path().join("other.key");
    LocalKms::generate()
        .unwrap()
        .write_new_key_file(&other)
        .unwrap();
    let other = other.to_str().unwrap().to_string();
    let wrong = Setup {
        key_file: PathBuf::from(&other),
        env: s.env.clone(),
        dir: tempfile::tempdir().unwrap(),
        kms: LocalKms::generate().unwrap(),
    };
    let c = temporary_failure(&wrong, &f, &[], 454, "kms_wrong_key").await;
    assert_no_password(&s, &c, &pw);
}

/// e2e/peers/set-password.sh of this repository (or MAILCRED_PEERS_SCRIPTS), password on stdin.
fn set_password(s: &Setup, user: &str, password: &str) {
    use std::io::Write;
    let scripts = std::env::var("MAILCRED_PEERS_SCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/peers"));
    let mut child = Command::new(scripts.join("set-password.sh"))
        .args([s.e("PEERS_DIR"), user])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("set-password.sh in {}: {e}", scripts.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn rotation_is_picked_up_from_the_credential_file() {
    let s = Setup::new();
    let user = s.e("PEERS_ROTATE_USER").to_string();
    // Start from a password of our own: the env file's may have been rotated by an earlier run.
    let old = format!("initial-{}", token("pw"));
    set_password(&s, &user, &old);
    let file = s
        .credential_file(
            "c.yaml",
            s.endpoint(false),
            &user,
            &old,
            SmtpPolicy::default(),
        )
        .await;
    let mut sidecar = Sidecar::start(&s, &file, &[]);
    let first = token("before-rotation");
    assert_eq!(
        send_smtplib(
            &sidecar,
            s.dir.path(),
            &user,
            &[&user],
            &message(&user, &user, &first, 10)
        )
        .code,
        250
    );
    // New password upstream and re-sealed into the file.
    let new = format!("rotated-{}", token("pw"));
    set_password(&s, &user, &new);
    s.credential_file(
        "c.yaml",
        s.endpoint(false),
        &user,
        &new,
        SmtpPolicy::default(),
    )
    .await;
    sidecar.wait_log("credential file changed; reloaded");
    let second = token("after-rotation");
    let r = send_smtplib(
        &sidecar,
        s.dir.path(),
        &user,
        &[&user],
        &message(&user, &user, &second, 10),
    );
    assert_eq!(r.code, 250, "{r:?}\n{}", sidecar.logs());
    assert_delivered(&s, &user, &new, &first);
    assert_delivered(&s, &user, &new, &second);
    let builds = reqwest_metrics(sidecar.admin);
    assert!(
        builds.contains("mailcred_smtp_upstream_pools_built_total 2"),
        "{builds}"
    );
    assert!(
        builds.contains("mailcred_kms_decrypts_total{result=\"ok\"} 2"),
        "{builds}"
    );
    assert_no_password(&s, &sidecar, &old);
    assert_no_password(&s, &sidecar, &new);
    // Back to the env file's password: later tests (imap-proxy's, the e2e suites) log in with it.
    set_password(&s, &user, s.e("PEERS_ROTATE_PASSWORD"));
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn sigterm_finishes_the_message_in_flight() {
    use std::io::{Read, Write};
    let s = Setup::new();
    let user = s.e("PEERS_USER").to_string();
    let pw = s.e("PEERS_PASSWORD").to_string();
    let file = s
        .credential_file(
            "c.yaml",
            s.endpoint(false),
            &user,
            &pw,
            SmtpPolicy::default(),
        )
        .await;
    let mut sidecar = Sidecar::start(&s, &file, &[]);
    let mut app = std::net::TcpStream::connect(("127.0.0.1", sidecar.port)).unwrap();
    app.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reader = BufReader::new(app.try_clone().unwrap());
    let mut line = String::new();
    let mut expect = |reader: &mut BufReader<std::net::TcpStream>, code: &str| loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with(code), "expected {code}, got {line:?}");
        if line.as_bytes().get(3) == Some(&b' ') {
            break;
        }
    };
    expect(&mut reader, "220");
    let subject = token("sigterm");
    app.write_all(
        format!("EHLO app.local\r\nMAIL FROM:<{user}>\r\nRCPT TO:<{user}>\r\nDATA\r\n").as_bytes(),
    )
    .unwrap();
    expect(&mut reader, "250");
    expect(&mut reader, "250");
    expect(&mut reader, "250");
    expect(&mut reader, "354");
    app.write_all(b"From: <").unwrap();
    // SIGTERM while the message is half sent.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(sidecar.child.id() as i32, libc::SIGTERM) },
        0
    );
    sidecar.wait_log("stopped accepting");
    let rest = String::from_utf8(message(&user, &user, &subject, 10)).unwrap();
    app.write_all(rest.trim_start_matches("From: <").as_bytes())
        .unwrap();
    app.write_all(b".\r\n").unwrap();
    expect(&mut reader, "250");
    app.write_all(b"QUIT\r\n").unwrap();
    let mut tail = String::new();
    let _ = reader.read_to_string(&mut tail);
    let status = sidecar.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", sidecar.port)).is_err(),
        "no longer accepting"
    );
    assert_delivered(&s, &user, &pw, &subject);
}

/// One SMTP exchange up to MAIL FROM: the reply to MAIL.
fn smtp_mail_reply(port: u16, sender: &str) -> String {
    use std::io::Write;
    let app = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    app.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reader = BufReader::new(app.try_clone().unwrap());
    let mut writer = app;
    let reply = |reader: &mut BufReader<std::net::TcpStream>| loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.as_bytes().get(3) != Some(&b'-') {
            return line;
        }
    };
    assert!(reply(&mut reader).starts_with("220"));
    writer.write_all(b"EHLO app.local\r\n").unwrap();
    assert!(reply(&mut reader).starts_with("250"));
    writer
        .write_all(format!("MAIL FROM:<{sender}>\r\n").as_bytes())
        .unwrap();
    let mail = reply(&mut reader);
    writer.write_all(b"QUIT\r\n").unwrap();
    mail
}

/// One IMAP LOGIN as the application: the tagged reply.
fn imap_login_reply(port: u16) -> String {
    use std::io::Write;
    let app = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    app.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reader = BufReader::new(app.try_clone().unwrap());
    let mut writer = app;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("* OK"), "{line}");
    writer.write_all(b"a1 LOGIN app any\r\n").unwrap();
    let tagged = loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "connection closed before the LOGIN reply");
        if line.starts_with("a1 ") {
            break line.clone();
        }
    };
    writer.write_all(b"a2 LOGOUT\r\n").unwrap();
    tagged
}

/// Polls (bounded) until `attempt` gives a reply starting with `refused`; every reply before
/// it must start with `served`.
fn until_refused(attempt: impl Fn() -> String, served: &str, refused: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = attempt();
        if reply.starts_with(refused) {
            return reply;
        }
        assert!(reply.starts_with(served), "{reply}");
        assert!(
            Instant::now() < deadline,
            "still served after the access list changed: {reply}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn removed_service_account_is_refused_before_the_ttl() {
    let s = Setup::new();
    let user = s.e("PEERS_USER").to_string();
    let pw = s.e("PEERS_PASSWORD").to_string();
    let mut resource = TestCredential::new("ns", "mail")
        .smtp_endpoint(s.endpoint(false))
        .imap(
            s.e("PEERS_HOST"),
            s.env.port("PEERS_IMAP_TLS_PORT"),
            TlsMode::Implicit,
        )
        .ca_pem(&s.ca())
        .username(&user)
        .service_accounts(&["app", "batch"])
        .sealed(&s.kms, &pw)
        .await;
    let file = s.write("c.yaml", &resource);
    // TTL 900 s (the default): only the access check can refuse within this test.
    let sidecar = Sidecar::start(&s, &file, &["--service-account", "app"]);
    assert!(smtp_mail_reply(sidecar.port, &user).starts_with("250"));
    let login = imap_login_reply(sidecar.imap);
    assert!(login.starts_with("a1 OK"), "{login}\n{}", sidecar.logs());

    // The same sealed secret; only the access list changes.
    resource.spec.access.service_accounts = vec!["batch".into()];
    s.write("c.yaml", &resource);
    let mail = until_refused(|| smtp_mail_reply(sidecar.port, &user), "250", "454");
    assert!(mail.contains("service_account_not_allowed"), "{mail}");
    let login = until_refused(|| imap_login_reply(sidecar.imap), "a1 OK", "a1 NO");
    assert!(
        login.contains("[UNAVAILABLE]") && login.contains("service_account_not_allowed"),
        "{login}"
    );
    let logs = sidecar.logs();
    assert!(
        logs.contains("spec.access.serviceAccounts") && logs.contains("ServiceAccount app"),
        "the refusal names the access list:\n{logs}"
    );
    let metrics = reqwest_metrics(sidecar.admin);
    assert!(
        metrics.contains("mailcred_credential_cache_drops_total{reason=\"access_revoked\"} 1"),
        "the cached password was dropped at once:\n{metrics}"
    );
    assert_no_password(&s, &sidecar, &pw);
}
