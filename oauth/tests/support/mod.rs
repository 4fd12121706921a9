//! A loopback HTTPS token endpoint for fault tests: real TCP, real TLS (a test CA and the
//! loopback listener from core's testkit), one scripted behaviour, every request counted and
//! its form kept.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailcred_core::crd::{ClientAuthMethod, OAuthGrantKind, OAuthProvider, OAuthSpec};
use mailcred_core::testkit::ScriptedServer;
use mailcred_core::upstream_auth::GrantSecret;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the endpoint answers.
#[derive(Clone)]
pub enum Behaviour {
    /// 200 with this JSON body after `delay`.
    Json { body: String, delay: Duration },
    /// This status with this body.
    Status(u16, String),
    /// Accepts, reads the request, never answers.
    Stall,
    /// 200 with `len` bytes, with or without a Content-Length.
    Huge { len: usize, declared: bool },
}

impl Behaviour {
    pub fn token(expires_in: &str) -> Self {
        Behaviour::Json {
            body: format!(r#"{{"access_token":"tok-{{n}}","token_type":"Bearer"{expires_in}}}"#),
            delay: Duration::ZERO,
        }
    }
}

pub struct Endpoint {
    pub url: String,
    pub ca_pem: String,
    pub requests: Arc<AtomicUsize>,
    pub forms: Arc<Mutex<Vec<String>>>,
    pub behaviour: Arc<Mutex<Behaviour>>,
}

impl Endpoint {
    pub async fn start(behaviour: Behaviour) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let forms = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let (r, f, b) = (requests.clone(), forms.clone(), behaviour.clone());
        let server = ScriptedServer::implicit_tls(move |mut tls| {
            let (r, f, b) = (r.clone(), f.clone(), b.clone());
            async move {
                let Some(form) = read_request(&mut tls).await else {
                    return;
                };
                let n = r.fetch_add(1, Ordering::SeqCst) + 1;
                f.lock().unwrap().push(form);
                let behaviour = b.lock().unwrap().clone();
                answer(&mut tls, behaviour, n).await;
            }
        })
        .await;
        Self {
            url: format!("https://localhost:{}/token", server.port),
            ca_pem: server.ca_pem,
            requests,
            forms,
            behaviour,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// A generic clientCredentials spec pointing here.
    pub fn spec(&self, grant: OAuthGrantKind, auth: ClientAuthMethod) -> OAuthSpec {
        spec(&self.url, Some(&self.ca_pem), "client-1", grant, auth)
    }
}

pub fn spec(
    url: &str,
    ca_pem: Option<&str>,
    client_id: &str,
    grant: OAuthGrantKind,
    auth: ClientAuthMethod,
) -> OAuthSpec {
    OAuthSpec {
        provider: OAuthProvider::Generic,
        tenant: None,
        token_endpoint: Some(url.to_string()),
        client_id: client_id.to_string(),
        grant,
        client_auth: Some(auth),
        scopes: vec!["mail".to_string()],
        mechanism: Default::default(),
        subject: None,
        key_id: None,
        certificate_thumbprint: None,
        ca_pem: ca_pem.map(str::to_owned),
        insecure: false,
        insecure_reason: None,
    }
}

pub fn client_secret(secret: &str) -> GrantSecret {
    GrantSecret {
        client_secret: Some(SecretString::from(secret.to_string())),
        ..GrantSecret::default()
    }
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
        }
    }
}

async fn answer<S: tokio::io::AsyncWrite + Unpin>(s: &mut S, behaviour: Behaviour, n: usize) {
    let reply = |status: u16, body: &str| {
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    match behaviour {
        Behaviour::Json { body, delay } => {
            tokio::time::sleep(delay).await;
            let body = body.replace("{n}", &n.to_string());
            let _ = s.write_all(reply(200, &body).as_bytes()).await;
        }
        Behaviour::Status(status, body) => {
            let _ = s.write_all(reply(status, &body).as_bytes()).await;
        }
        Behaviour::Stall => tokio::time::sleep(Duration::from_secs(3600)).await,
        Behaviour::Huge { len, declared } => {
            let head = if declared {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
            } else {
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string()
            };
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let block = vec![b'a'; 64 * 1024];
            for _ in 0..len / block.len() {
                if s.write_all(&block).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = s.shutdown().await;
}
