//! The application side of tests: a relay on loopback with a recording upstream, and a
//! line-oriented SMTP client.

use std::sync::Arc;

use mailcred_core::crd::{Policy, SmtpPolicy, TlsMode, UpstreamEndpoint};
use mailcred_core::credential::{CredentialSource, UsableCredential};
use mailcred_core::{MailPassword, UpstreamAuth};
use mailcred_smtp::testkit::RecordingUpstream;
use mailcred_smtp::{RelayConfig, RelayMetrics, SmtpRelay};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

pub fn credential(smtp: SmtpPolicy) -> Arc<UsableCredential> {
    Arc::new(UsableCredential {
        namespace: "ns".into(),
        name: "mail".into(),
        username: "app@example.test".into(),
        smtp: Some(UpstreamEndpoint {
            host: "localhost".into(),
            port: 1,
            tls: TlsMode::Starttls,
            ca_pem: None,
            insecure: false,
            insecure_reason: None,
        }),
        imap: None,
        policy: Policy {
            smtp,
            ..Default::default()
        },
        oauth: None,
        sealed_fingerprint: "sha256:test".into(),
        auth: UpstreamAuth::Password(MailPassword::new("s3cret-Upstream-Pw".into()).unwrap()),
    })
}

pub struct Relay {
    pub addr: std::net::SocketAddr,
    pub recorder: RecordingUpstream,
    pub metrics: RelayMetrics,
    /// Message memory not held by any session, in bytes.
    pub memory_free: Box<dyn Fn() -> usize + Send + Sync>,
    _stop: tokio_util::sync::DropGuard,
}

pub async fn start(source: Arc<dyn CredentialSource>, config: RelayConfig) -> Relay {
    let recorder = RecordingUpstream::default();
    let metrics = RelayMetrics::unregistered();
    let relay = SmtpRelay::with_upstream(config, source, metrics.clone(), recorder.clone());
    let memory_free = Box::new(relay.memory_probe());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(relay.serve(listener, stop.clone()));
    Relay {
        addr,
        recorder,
        metrics,
        memory_free,
        _stop: stop.drop_guard(),
    }
}

pub struct Client {
    pub r: BufReader<OwnedReadHalf>,
    pub w: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut c = Self {
            r: BufReader::new(r),
            w,
        };
        assert!(c.reply().await.starts_with("220 "));
        c
    }

    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return format!("{all}<EOF>");
            }
            all.push_str(&line);
            if line.as_bytes().get(3) == Some(&b' ') {
                return all;
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// EHLO, MAIL and RCPTs, each expected to succeed.
    pub async fn envelope(&mut self, from: &str, to: &[&str]) {
        assert!(self.cmd("EHLO app.local").await.starts_with("250"));
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        assert!(r.starts_with("250 2.1.0"), "{r}");
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>")).await;
            assert!(r.starts_with("250 2.1.5"), "{r}");
        }
    }

    /// DATA, then `body` (already dot-stuffed and ending in the end marker); the final reply.
    pub async fn data(&mut self, body: &[u8]) -> String {
        let r = self.cmd("DATA").await;
        assert!(r.starts_with("354"), "{r}");
        self.send(body).await;
        self.reply().await
    }
}
