//! The application side: python smtplib / imaplib scripts, messages, and the checks on the
//! mailbox, postfix's log and the sidecar's log.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Setup, Sidecar, token};

pub const SEND_PY: &str = r#"
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

pub const FETCH_PY: &str = r#"
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

pub const IMAP_PY: &str = r#"
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
pub struct Outcome {
    pub code: u16,
    pub msg: String,
}

pub fn message(from: &str, to: &str, subject: &str, body_bytes: usize) -> Vec<u8> {
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

pub fn send_smtplib(sidecar: &Sidecar, dir: &Path, from: &str, to: &[&str], msg: &[u8]) -> Outcome {
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
pub fn mailbox_count(setup: &Setup, user: &str, password: &str, needle: &str) -> usize {
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
pub fn assert_delivered(setup: &Setup, user: &str, password: &str, needle: &str) {
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
pub fn postfix_session_of(setup: &Setup, needle: &str) -> Vec<String> {
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
pub fn assert_no_password(setup: &Setup, sidecar: &Sidecar, password: &str) {
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
