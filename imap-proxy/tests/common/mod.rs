//! Shared test harness: a credential sealed in the test with the local KMS provider and
//! opened per session through the real envelope code, a proxy on an ephemeral loopback port,
//! a raw IMAP client, and the peers' env file.
#![allow(dead_code)]

pub mod scripted;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mailcred_core::crd::{
    Access, ImapPolicy, KmsKeyRef, KmsProviderKind, MailCredentialSpec, Policy, SealedSecret,
    TlsMode, UpstreamEndpoint,
};
use mailcred_core::credential::{CredentialSource, UsableCredential};
use mailcred_core::kms::LocalKms;
use mailcred_core::{
    CredentialBinding, Error as CoreError, KmsError, MailPassword, UpstreamAuth, envelope,
};
use mailcred_imap::{ImapMetrics, ImapProxy, ImapProxyConfig};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const NS: &str = "apps";
pub const NAME: &str = "mailbox-reader";

pub fn endpoint(host: &str, port: u16, tls: TlsMode, ca_pem: Option<String>) -> UpstreamEndpoint {
    UpstreamEndpoint {
        host: host.to_owned(),
        port,
        tls,
        ca_pem,
        insecure: false,
        insecure_reason: None,
    }
}

pub fn policy(read_only: bool, mailboxes: &[&str]) -> ImapPolicy {
    ImapPolicy {
        enabled: true,
        read_only,
        seen_only: false,
        allowed_mailboxes: mailboxes.iter().map(|s| s.to_string()).collect(),
    }
}

/// A MailCredential sealed with a local key in the test; every `credential()` opens it again
/// (the runtime's source caches; opening per session exercises the envelope each time).
pub struct SealedSource {
    kms: LocalKms,
    spec: MailCredentialSpec,
    pub opened: Mutex<u32>,
}

impl SealedSource {
    pub async fn new(
        imap: Option<UpstreamEndpoint>,
        username: &str,
        password: &str,
        imap_policy: ImapPolicy,
    ) -> Arc<Self> {
        let kms = LocalKms::generate().expect("local key");
        let smtp = match imap {
            // A binding needs one endpoint; an SMTP one stands in for "no IMAP server".
            None => Some(endpoint("localhost", 1, TlsMode::Implicit, None)),
            Some(_) => None,
        };
        let mut spec = MailCredentialSpec {
            smtp,
            imap,
            username: username.to_owned(),
            oauth: None,
            sealed_secret: Some(SealedSecret {
                version: 1,
                kms: KmsKeyRef {
                    provider: KmsProviderKind::Local,
                    key_id: kms.fingerprint().to_owned(),
                    wrapping: Default::default(),
                    region: None,
                    endpoint: None,
                },
                encrypted_data_key: "x".into(),
                nonce: "x".into(),
                ciphertext: "x".into(),
            }),
            seal_request: None,
            policy: Policy {
                imap: imap_policy,
                ..Default::default()
            },
            access: Access {
                service_accounts: vec!["reader".into()],
            },
            expires_at: None,
        };
        let binding = CredentialBinding::new(NS, NAME, &spec).expect("binding");
        let password = MailPassword::new(password.to_owned()).expect("password");
        spec.sealed_secret = Some(
            envelope::seal(&kms, &binding, &password)
                .await
                .expect("seal"),
        );
        Arc::new(Self {
            kms,
            spec,
            opened: Mutex::new(0),
        })
    }
}

#[async_trait]
impl CredentialSource for SealedSource {
    async fn credential(&self) -> Result<Arc<UsableCredential>, CoreError> {
        let binding = CredentialBinding::new(NS, NAME, &self.spec)?;
        let sealed = self.spec.sealed_secret.as_ref().expect("sealed");
        let password = envelope::open(&self.kms, &binding, sealed).await?;
        *self.opened.lock().unwrap() += 1;
        Ok(Arc::new(UsableCredential {
            namespace: NS.into(),
            name: NAME.into(),
            username: self.spec.username.clone(),
            smtp: self.spec.smtp.clone(),
            imap: self.spec.imap.clone(),
            policy: self.spec.policy.clone(),
            oauth: None,
            sealed_fingerprint: envelope::fingerprint(sealed),
            auth: UpstreamAuth::Password(password),
        }))
    }
}

/// A source whose KMS is down.
pub struct KmsDown;

#[async_trait]
impl CredentialSource for KmsDown {
    async fn credential(&self) -> Result<Arc<UsableCredential>, CoreError> {
        Err(CoreError::Kms(KmsError::Unreachable {
            key_id: "arn:aws:kms:us-east-1:111122223333:key/test".into(),
            detail: "connection refused".into(),
        }))
    }
}

pub struct RunningProxy {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningProxy {
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).unwrap();
        out
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("proxy stops")
                .unwrap();
        }
    }
}

/// Starts a proxy on 127.0.0.1:0.
pub async fn start_proxy(
    config: ImapProxyConfig,
    source: Arc<dyn CredentialSource>,
) -> RunningProxy {
    let mut registry = Registry::default();
    let metrics = ImapMetrics::register(&mut registry);
    serve(ImapProxy::new(config, source, metrics), registry).await
}

/// Starts a proxy in account-set mode on 127.0.0.1:0 (the config must carry a local token).
pub async fn start_accounts_proxy(
    config: ImapProxyConfig,
    accounts: Arc<dyn mailcred_core::accounts::AccountDirectory>,
) -> RunningProxy {
    let mut registry = Registry::default();
    let metrics = ImapMetrics::register(&mut registry);
    let proxy = ImapProxy::new(
        config,
        Arc::new(mailcred_core::local_login::NoSource),
        metrics,
    )
    .with_accounts(accounts)
    .expect("account-set mode with a local token");
    serve(proxy, registry).await
}

async fn serve(proxy: ImapProxy, registry: Registry) -> RunningProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stop = mailcred_imap::CancellationToken::new();
        let cancel = stop.clone();
        tokio::spawn(async move {
            let _ = rx.await;
            cancel.cancel();
        });
        proxy.serve(listener, stop).await.unwrap();
    });
    RunningProxy {
        addr,
        registry: Arc::new(registry),
        stop: Some(tx),
        task: Some(task),
    }
}

/// A raw IMAP client that reads whole responses (lines and literals).
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub transcript: Vec<u8>,
}

pub const WAIT: Duration = Duration::from_secs(30);

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = Self {
            stream,
            buf: Vec::new(),
            transcript: Vec::new(),
        };
        let greeting = c.line().await.expect("greeting");
        assert!(greeting.starts_with("* OK"), "{greeting}");
        c
    }

    pub async fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).await.unwrap();
    }

    /// The next line (without CRLF), or None at EOF.
    pub async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&c| c == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned();
                return Some(text);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("the proxy answers in time")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        self.transcript.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Reads `n` literal bytes.
    pub async fn literal(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "EOF inside a literal");
        }
        self.buf.drain(..n).collect()
    }

    /// Lines up to and including the tagged one (literals are read and dropped).
    pub async fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .line()
                .await
                .unwrap_or_else(|| panic!("EOF before {tag}; got {lines:?}"));
            if let Some(n) = literal_len(&line) {
                self.literal(n).await;
            }
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    pub async fn cmd(&mut self, tag: &str, command: &str) -> Vec<String> {
        self.send(format!("{tag} {command}\r\n").as_bytes()).await;
        self.until_tagged(tag).await
    }

    /// True when the server closed the connection (after reading what is left).
    pub async fn closed(&mut self) -> bool {
        loop {
            if !self.fill().await {
                return true;
            }
        }
    }
}

pub fn literal_len(line: &str) -> Option<usize> {
    let body = line.strip_suffix('}')?;
    let open = body.rfind('{')?;
    body[open + 1..].trim_end_matches('+').parse().ok()
}

pub fn last(lines: &[String]) -> &str {
    lines.last().map(String::as_str).unwrap_or("")
}

/// The peers' env file (e2e/peers/start.sh DIR writes DIR/env).
pub fn peers_env() -> HashMap<String, String> {
    let path = std::env::var("MAILCRED_PEERS_ENV").unwrap_or_else(|_| {
        panic!("MAILCRED_PEERS_ENV is not set: start the real peers with e2e/peers/start.sh DIR and set MAILCRED_PEERS_ENV=DIR/env (scripts/test.sh does both)")
    });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
