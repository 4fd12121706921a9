//! The real `mailcred-operator` binary, wired as in production, against a fake API server
//! (plain HTTP on loopback, reached through a kubeconfig): it reconciles a credential, creates
//! its webhook certificate Secret and patches caBundle, turns ready, injects a pod over HTTPS
//! with the certificate it made, exports metrics, and exits cleanly on SIGTERM.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

#[derive(Default)]
struct FakeState {
    requests: Vec<(String, String, Value)>,
    secret: Option<Value>,
    webhook_config: Value,
}

type Shared = Arc<Mutex<FakeState>>;

fn reply(code: StatusCode, v: Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

fn not_found(what: &str) -> Response {
    reply(
        StatusCode::NOT_FOUND,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound", "message": format!("{what} not found")}),
    )
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Response {
    reply(
        StatusCode::OK,
        json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "10"}, "items": items}),
    )
}

async fn api(State(state): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = state.lock().unwrap();
    s.requests
        .push((method.to_string(), format!("{path}?{query}"), body.clone()));
    if method == Method::GET && query.contains("watch=true") {
        let pending = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            Body::from_stream(pending),
        )
            .into_response();
    }
    const SECRET: &str = "/api/v1/namespaces/mailcred-system/secrets/mailcred-operator-webhook-tls";
    const CONFIG: &str =
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/mailcred-operator";
    match (method.as_str(), path.as_str()) {
        ("GET", "/apis/mailcred.io/v1alpha1/mailcredentials") => list(
            "MailCredentialList",
            "mailcred.io/v1alpha1",
            vec![common::credential_json()],
        ),
        ("GET", "/apis/rbac.authorization.k8s.io/v1/roles") => {
            list("RoleList", "rbac.authorization.k8s.io/v1", vec![])
        }
        ("GET", "/apis/rbac.authorization.k8s.io/v1/rolebindings") => {
            list("RoleBindingList", "rbac.authorization.k8s.io/v1", vec![])
        }
        ("PATCH", "/apis/mailcred.io/v1alpha1/namespaces/mail/mailcredentials/smtp/status") => {
            let mut obj = common::credential_json();
            obj["status"] = body["status"].clone();
            reply(StatusCode::OK, obj)
        }
        ("PATCH", p) if p.starts_with("/apis/rbac.authorization.k8s.io/") => {
            reply(StatusCode::OK, body)
        }
        ("POST", "/apis/events.k8s.io/v1/namespaces/mail/events") => {
            reply(StatusCode::CREATED, body)
        }
        ("GET", SECRET) => match s.secret.clone() {
            Some(secret) => reply(StatusCode::OK, secret),
            None => not_found("secret"),
        },
        ("POST", "/api/v1/namespaces/mailcred-system/secrets") => {
            let mut secret = body;
            secret["metadata"]["resourceVersion"] = json!("1");
            s.secret = Some(secret.clone());
            reply(StatusCode::CREATED, secret)
        }
        ("GET", CONFIG) => reply(StatusCode::OK, s.webhook_config.clone()),
        ("PATCH", CONFIG) => {
            let patch: json_patch::Patch = serde_json::from_value(body).unwrap();
            json_patch::patch(&mut s.webhook_config, &patch).unwrap();
            reply(StatusCode::OK, s.webhook_config.clone())
        }
        _ => not_found(&format!("{method} {path}")),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited 60 s for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
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
async fn post_review(port: u16, ca_pem: &str, review: &Value) -> Value {
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

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_reconciles_serves_tls_it_made_and_shuts_down_cleanly() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let state: Shared = Arc::new(Mutex::new(FakeState {
        webhook_config: json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "mailcred-operator"},
            "webhooks": [{"name": "inject.mailcred.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "clientConfig": {"service": {"name": "mailcred-operator-webhook", "namespace": "mailcred-system", "path": "/mutate"}}}]
        }),
        ..FakeState::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_port = listener.local_addr().unwrap().port();
    tokio::spawn(
        axum::serve(
            listener,
            Router::new().fallback(api).with_state(state.clone()),
        )
        .into_future(),
    );

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
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
        .env("HOME", dir.path())
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "mailcred-system")
        .env("POD_NAME", "mailcred-operator-0")
        .args(["--leader-elect", "false", "--shutdown-grace-seconds", "15"])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args(["--webhook-addr", &format!("127.0.0.1:{webhook_port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut operator = Operator(child);

    // Ready once the certificate exists and the cache has synced.
    let mut ready = false;
    for _ in 0..1200 {
        if let Some((200, _)) = http_get(metrics_port, "/readyz").await {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "/readyz never turned 200");

    // The controller did its work through the kubeconfig's API server.
    let status = wait_for("the status patch", || {
        state
            .lock()
            .unwrap()
            .requests
            .iter()
            .find(|(m, p, _)| m == "PATCH" && p.contains("/mailcredentials/smtp/status"))
            .map(|(_, p, b)| (p.clone(), b.clone()))
    })
    .await;
    assert!(
        status.0.contains("fieldManager=mailcred-operator"),
        "{}",
        status.0
    );
    assert_eq!(status.1["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(status.1["status"]["conditions"][0]["status"], "True");
    {
        let s = state.lock().unwrap();
        for path in ["/roles/mailcred-smtp?", "/rolebindings/mailcred-smtp?"] {
            assert!(
                s.requests
                    .iter()
                    .any(|(m, p, _)| m == "PATCH" && p.contains(path)),
                "no apply of {path}"
            );
        }
    }

    // It made its CA, stored it, and told the API server to trust it.
    let ca = {
        let s = state.lock().unwrap();
        let secret = s.secret.clone().expect("webhook Secret created");
        let ca = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(secret["data"]["ca.crt"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        let bundle = s.webhook_config["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .expect("caBundle patched")
            .to_string();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(bundle)
                .unwrap(),
            ca.as_bytes()
        );
        ca
    };

    // The API server's view: a TLS call to the Service name, trusting caBundle.
    let review: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pod-create.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let answer = post_review(webhook_port, &ca, &review).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"]["patch"].is_string(), "{answer}");

    let (code, metrics) = http_get(metrics_port, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    for line in [
        "mailcred_operator_admission_requests_total{outcome=\"injected\"} 1",
        "mailcred_operator_injections_total 1",
        "mailcred_operator_reconciles_total{result=\"ok\"}",
        "mailcred_operator_leader 1",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}:\n{metrics}");
    }
    assert_eq!(
        http_get(metrics_port, "/healthz").await.unwrap(),
        (200, "ok".to_string())
    );

    // SIGTERM: drains and exits 0.
    let pid = operator.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(status) = operator.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
}
