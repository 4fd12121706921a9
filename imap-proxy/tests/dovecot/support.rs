//! What the dovecot tests share: the peers' env, the python application, maildir delivery
//! and the checks on what the application received.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use mailcred_core::crd::{TlsMode, UpstreamEndpoint};
use mailcred_core::testkit::process_logs;
use serde_json::{Value, json};

pub const APP_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/app/imap_app.py");

pub struct Peers(HashMap<String, String>);

impl Peers {
    pub fn load() -> Self {
        Self(peers_env())
    }
    pub fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from the peers env file"))
    }
    pub fn imap(&self, tls: TlsMode) -> UpstreamEndpoint {
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
    pub fn maildir(&self, user: &str, folder: Option<&str>) -> PathBuf {
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
    pub fn dovecot_log(&self) -> String {
        std::fs::read_to_string(self.get("PEERS_DOVECOT_LOG")).unwrap()
    }
}

/// Everything the proxy logs in this test binary, at every level (rustls' `log` records
/// included): no password may appear in it.
pub fn logs_text() -> String {
    process_logs().text()
}

pub fn marker() -> String {
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
pub async fn run_app(scenario: &str, port: u16, mut args: Value) -> (Value, Vec<u8>) {
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
pub fn deliver(maildir: &Path, subject: &str, body_len: usize) -> Vec<u8> {
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

pub fn sha256_hex(data: &[u8]) -> String {
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

pub fn refused(report: &Value, name: &str) -> String {
    report["refused"][name]["tagged"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub fn assert_no_password(password: &str, what: &str, text: &[u8]) {
    let hay = String::from_utf8_lossy(text);
    assert!(!hay.contains(password), "the password appears in {what}");
}

pub async fn logged_in(proxy: &RunningProxy) -> Client {
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("l1", "LOGIN app x").await;
    assert!(last(&r).starts_with("l1 OK [CAPABILITY "), "{r:?}");
    c
}

/// Tests that kick or stop the rotate user's dovecot processes run one at a time.
pub static ROTATE_USER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
