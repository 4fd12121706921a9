//! The operator binary as a child process: started with a kubeconfig for the fake cluster and
//! its own loopback ports, waited for, spoken to (plain HTTP for /readyz and /metrics, TLS for
//! the webhook), and stopped with SIGTERM.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited 60 s for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .ok()?;
    let res = sender.send_request(req).await.ok()?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// POSTs a review over TLS to 127.0.0.1, verifying the certificate for the Service's DNS name.
pub async fn post_review(port: u16, ca_pem: &str, review: &Value) -> Value {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from("mailcred-operator-webhook.mailcred-system.svc").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS with the operator's CA");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/mutate")
        .header("host", "mailcred-operator-webhook.mailcred-system.svc")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(review.to_string())))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

pub struct Operator {
    child: Child,
    pub metrics_port: u16,
    pub webhook_port: u16,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with a kubeconfig pointing at `api_port`.
pub fn start_operator(
    dir: &std::path::Path,
    api_port: u16,
    pod_name: &str,
    args: &[&str],
) -> Operator {
    let kubeconfig = dir.join(format!("kubeconfig-{pod_name}"));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{api_port}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: nobody\ncurrent-context: fake\nusers:\n- name: nobody\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let (metrics_port, webhook_port) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_mailcred-operator"))
        .env_clear()
        .env("HOME", dir)
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "mailcred-system")
        .env("POD_NAME", pod_name)
        .args(["--shutdown-grace-seconds", "15"])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args(["--webhook-addr", &format!("127.0.0.1:{webhook_port}")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Operator {
        child,
        metrics_port,
        webhook_port,
    }
}

pub async fn wait_ready(op: &Operator) {
    for _ in 0..1200 {
        if let Some((200, _)) = http_get(op.metrics_port, "/readyz").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz never turned 200");
}

pub async fn metric(op: &Operator, name: &str) -> Option<String> {
    let (_, text) = http_get(op.metrics_port, "/metrics").await?;
    text.lines()
        .find(|l| l.starts_with(name))
        .map(|l| l.to_string())
}

/// SIGTERM, then the exit status (within 30 s).
pub async fn terminate(op: &mut Operator) -> std::process::ExitStatus {
    let pid = op.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = op.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
