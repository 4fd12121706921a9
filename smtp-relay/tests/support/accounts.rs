//! Account-set mode fixtures: a directory of two accounts on a recording upstream, a relay
//! serving it with a local token, and the AUTH forms of an application.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailcred_core::accounts::AccountDirectory;
use mailcred_core::crd::SmtpPolicy;
use mailcred_core::credential::CredentialSource;
use mailcred_core::testkit::{FailingSource, StaticDirectory, StaticSource, TestCredential};
use mailcred_smtp::testkit::RecordingUpstream;
use mailcred_smtp::{RelayConfig, RelayMetrics, SmtpRelay};
use tokio_util::sync::CancellationToken;

use super::app::Client;

pub const TOKEN: &str = "app-local-token-0123456789";
pub const FAILED: &str = "535 5.7.8 authentication failed\r\n";

pub fn account(name: &str, smtp: SmtpPolicy) -> Arc<dyn CredentialSource> {
    let credential = TestCredential::new("ns", name)
        .username(&format!("{name}@example.test"))
        .smtp_policy(smtp)
        .usable(&format!("upstream-password-of-{name}"));
    Arc::new(StaticSource::new(credential))
}

pub fn directory() -> Arc<StaticDirectory> {
    let dir = Arc::new(StaticDirectory::new());
    dir.insert("alice", account("alice", SmtpPolicy::default()));
    dir.insert("bob", account("bob", SmtpPolicy::default()));
    dir
}

pub struct Relay {
    pub addr: std::net::SocketAddr,
    pub recorder: RecordingUpstream,
    pub metrics: RelayMetrics,
    pub _stop: tokio_util::sync::DropGuard,
}

pub async fn start(dir: Arc<StaticDirectory>) -> Relay {
    let recorder = RecordingUpstream::default();
    let metrics = RelayMetrics::unregistered();
    let config = RelayConfig {
        local_token: Some(TOKEN.into()),
        ..RelayConfig::default()
    };
    // The constructor's source is not used in account-set mode.
    let unused: Arc<dyn CredentialSource> = Arc::new(FailingSource::kms_down());
    let relay = SmtpRelay::with_upstream(config, unused, metrics.clone(), recorder.clone())
        .with_accounts(dir as Arc<dyn AccountDirectory>)
        .expect("a local token is set");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(relay.serve(listener, stop.clone()));
    Relay {
        addr,
        recorder,
        metrics,
        _stop: stop.drop_guard(),
    }
}

pub fn plain(authzid: &str, authcid: &str, password: &str) -> String {
    STANDARD.encode(format!("{authzid}\0{authcid}\0{password}"))
}

/// AUTH PLAIN with an initial response; the reply.
pub async fn auth_plain(c: &mut Client, authcid: &str, password: &str) -> String {
    c.cmd(&format!("AUTH PLAIN {}", plain("", authcid, password)))
        .await
}

/// AUTH LOGIN in three steps; the last reply.
pub async fn auth_login(c: &mut Client, user: &str, password: &str) -> String {
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(c.cmd(&STANDARD.encode(user)).await, "334 UGFzc3dvcmQ6\r\n");
    c.cmd(&STANDARD.encode(password)).await
}

pub async fn send(c: &mut Client, from: &str) -> String {
    let r = c.cmd(&format!("MAIL FROM:<{from}>")).await;
    if !r.starts_with("250") {
        return r;
    }
    assert!(c.cmd("RCPT TO:<x@example.org>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.cmd(&format!("From: {from}\r\nSubject: t\r\n\r\nbody\r\n."))
        .await
}
