//! A running `mailcred-sidecar` process with its ports and its log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{Setup, token};

/// A running `mailcred-sidecar`, killed on drop.
pub struct Sidecar {
    pub child: Child,
    pub port: u16,
    pub imap: u16,
    pub admin: u16,
    pub log: PathBuf,
}

impl Sidecar {
    pub fn start(setup: &Setup, credential: &Path, extra: &[&str]) -> Self {
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

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_log(&mut self, needle: &str) -> String {
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

    pub fn audits(&self) -> Vec<serde_json::Value> {
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
