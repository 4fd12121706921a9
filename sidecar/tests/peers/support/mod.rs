//! Test setup: the peers env, a temp dir, a local KMS key; credentials sealed and written for
//! the sidecar; the sidecar's admin endpoints.

mod mail;
mod sidecar;

pub use mail::*;
pub use sidecar::Sidecar;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use mailcred_core::crd::{MailCredential, SmtpPolicy, TlsMode, UpstreamEndpoint};
use mailcred_core::kms::LocalKms;
use mailcred_core::testkit::{PeersEnv, TestCredential, peers_env, write_manifest};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn token(label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{label}-{}-{n}-{nanos}", std::process::id())
}

pub struct Setup {
    pub env: PeersEnv,
    pub dir: tempfile::TempDir,
    pub kms: LocalKms,
    pub key_file: PathBuf,
}

impl Setup {
    pub fn new() -> Self {
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

    pub fn e(&self, k: &str) -> &str {
        self.env.get(k)
    }

    pub fn ca(&self) -> String {
        self.env.ca_pem()
    }

    pub fn endpoint(&self, implicit: bool) -> UpstreamEndpoint {
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
    pub async fn credential_file(
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
    pub fn write(&self, file: &str, resource: &MailCredential) -> PathBuf {
        let path = self.dir.path().join(file);
        write_manifest(resource, &path).unwrap();
        path
    }
}

pub fn admin_get(port: u16, path: &str) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}{path}")])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

pub fn reqwest_metrics(port: u16) -> String {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}
