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
    /// (server id, method, path?query, body)
    requests: Vec<(usize, String, String, Value)>,
    secret: Option<Value>,
    webhook_config: Value,
    lease: Option<Value>,
}

type Shared = Arc<Mutex<FakeState>>;

/// One API endpoint of the shared fake cluster; `id` tells which operator process called.
#[derive(Clone)]
struct Server {
    state: Shared,
    id: usize,
}

const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/mailcred-system/leases/mailcred-operator";

/// RFC 7386 merge, standing in for strategic-merge and apply patches on a Lease.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Held by someone else and not expired: what makes a real server's apply conflict.
fn held_by_other(lease: &Value, me: &Value) -> bool {
    let spec = &lease["spec"];
    let Some(holder) = spec["holderIdentity"].as_str() else {
        return false;
    };
    if Some(holder) == me.as_str() {
        return false;
    }
    let renewed: Option<k8s_openapi::jiff::Timestamp> =
        spec["renewTime"].as_str().and_then(|t| t.parse().ok());
    let duration = spec["leaseDurationSeconds"].as_i64().unwrap_or(0);
    renewed.is_some_and(|r| {
        r + k8s_openapi::jiff::SignedDuration::from_secs(duration)
            > k8s_openapi::jiff::Timestamp::now()
    })
}

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

async fn api(
    State(server): State<Server>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = server.state.lock().unwrap();
    s.requests.push((
        server.id,
        method.to_string(),
        format!("{path}?{query}"),
        body.clone(),
    ));
    let apply = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"));
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
        ("GET", LEASE) => match s.lease.clone() {
            Some(lease) => reply(StatusCode::OK, lease),
            None => not_found("lease"),
        },
        ("POST", "/apis/coordination.k8s.io/v1/namespaces/mailcred-system/leases") => {
            if s.lease.is_some() {
                return reply(
                    StatusCode::CONFLICT,
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 409, "reason": "AlreadyExists", "message": "exists"}),
                );
            }
            let mut lease = body;
            lease["metadata"]["namespace"] = json!("mailcred-system");
            s.lease = Some(lease.clone());
            reply(StatusCode::CREATED, lease)
        }
        ("PATCH", LEASE) => {
            let Some(mut lease) = s.lease.clone() else {
                return not_found("lease");
            };
            if apply && held_by_other(&lease, &body["spec"]["holderIdentity"]) {
                return reply(
                    StatusCode::CONFLICT,
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 409, "reason": "Conflict", "message": "Apply failed with 1 conflict: conflict with another manager: .spec.holderIdentity"}),
                );
            }
            merge(&mut lease, &body);
            s.lease = Some(lease.clone());
            reply(StatusCode::OK, lease)
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

/// `mailcred_operator_*` names in the chart's alert rules and dashboard (the sidecar's are
/// checked against a real scrape by e2e/local, charts/rules-check.py).
fn operator_series_used_by_alerts_and_dashboard() -> Vec<String> {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/mailcred");
    let mut names = Vec::new();
    for file in ["files/alerts.yaml", "dashboards/mailcred.json"] {
        let text = std::fs::read_to_string(format!("{chart}/{file}")).unwrap();
        for (at, _) in text.match_indices("mailcred_operator_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 5, "found the names: {names:?}");
    names
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

struct Operator {
    child: Child,
    metrics_port: u16,
    webhook_port: u16,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fake_cluster() -> Shared {
    Arc::new(Mutex::new(FakeState {
        webhook_config: json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "mailcred-operator"},
            "webhooks": [{"name": "inject.mailcred.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "clientConfig": {"service": {"name": "mailcred-operator-webhook", "namespace": "mailcred-system", "path": "/mutate"}}}]
        }),
        ..FakeState::default()
    }))
}

/// Serves the shared fake cluster on a new port, tagging requests with `id`.
async fn serve_api(state: &Shared, id: usize) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = Router::new().fallback(api).with_state(Server {
        state: state.clone(),
        id,
    });
    tokio::spawn(axum::serve(listener, router).into_future());
    port
}

/// Starts the binary with a kubeconfig pointing at `api_port`.
fn start_operator(dir: &std::path::Path, api_port: u16, pod_name: &str, args: &[&str]) -> Operator {
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

async fn wait_ready(op: &Operator) {
    for _ in 0..1200 {
        if let Some((200, _)) = http_get(op.metrics_port, "/readyz").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz never turned 200");
}

async fn metric(op: &Operator, name: &str) -> Option<String> {
    let (_, text) = http_get(op.metrics_port, "/metrics").await?;
    text.lines()
        .find(|l| l.starts_with(name))
        .map(|l| l.to_string())
}

/// SIGTERM, then the exit status (within 30 s).
async fn terminate(op: &mut Operator) -> std::process::ExitStatus {
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

fn status_patches_by(state: &Shared, id: usize) -> usize {
    state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|(i, m, p, _)| {
            *i == id && m == "PATCH" && p.contains("/mailcredentials/smtp/status")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_reconciles_serves_tls_it_made_and_shuts_down_cleanly() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let state = fake_cluster();
    let api_port = serve_api(&state, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let mut operator = start_operator(
        dir.path(),
        api_port,
        "mailcred-operator-0",
        &["--leader-elect", "false"],
    );

    // Ready once the certificate exists and the cache has synced.
    wait_ready(&operator).await;

    // The controller did its work through the kubeconfig's API server.
    let status = wait_for("the status patch", || {
        state
            .lock()
            .unwrap()
            .requests
            .iter()
            .find(|(_, m, p, _)| m == "PATCH" && p.contains("/mailcredentials/smtp/status"))
            .map(|(_, _, p, b)| (p.clone(), b.clone()))
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
                    .any(|(_, m, p, _)| m == "PATCH" && p.contains(path)),
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
    let answer = post_review(operator.webhook_port, &ca, &review).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"]["patch"].is_string(), "{answer}");

    let (code, metrics) = http_get(operator.metrics_port, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    for line in [
        "mailcred_operator_admission_requests_total{outcome=\"injected\"} 1",
        // Zero-initialised: an alert on rate() sees the first invalid review.
        "mailcred_operator_admission_requests_total{outcome=\"invalid\"} 0",
        "mailcred_operator_admission_requests_total{outcome=\"admitted_uninjected\"} 0",
        "mailcred_operator_injections_total 1",
        "mailcred_operator_reconciles_total{result=\"ok\"}",
        "mailcred_operator_leader 1",
        "mailcred_build_info{version=\"",
        // The classic text format (no Accept header): counters' TYPE names the _total series.
        "# TYPE mailcred_operator_injections_total counter",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}:\n{metrics}");
    }
    assert!(
        !metrics.contains("# EOF"),
        "OpenMetrics served without being asked for"
    );
    for name in operator_series_used_by_alerts_and_dashboard() {
        let present = metrics.lines().any(|l| {
            !l.starts_with('#')
                && (l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        });
        assert!(
            present,
            "{name} (used by the chart's alerts or dashboard) is not exported:\n{metrics}"
        );
    }
    assert_eq!(
        http_get(operator.metrics_port, "/healthz").await.unwrap(),
        (200, "ok".to_string())
    );

    // SIGTERM: drains and exits 0.
    let exit = terminate(&mut operator).await;
    assert!(exit.success(), "exit status {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_controller_and_failover_on_sigterm() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let state = fake_cluster();
    let (port_a, port_b) = (serve_api(&state, 1).await, serve_api(&state, 2).await);
    let dir = tempfile::tempdir().unwrap();
    let lease = ["--leader-elect", "true", "--lease-duration-seconds", "6"];
    let mut a = start_operator(dir.path(), port_a, "replica-a", &lease);
    let lease_held = || {
        state
            .lock()
            .unwrap()
            .lease
            .as_ref()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
    };
    let first = wait_for("replica-a to take the Lease", lease_held).await;
    assert_eq!(first, "replica-a");
    let mut b = start_operator(dir.path(), port_b, "replica-b", &lease);
    wait_ready(&a).await;
    wait_ready(&b).await; // both serve the webhook

    wait_for("replica-a to reconcile", || {
        (status_patches_by(&state, 1) > 0).then_some(())
    })
    .await;
    assert_eq!(
        metric(&a, "mailcred_operator_leader").await.as_deref(),
        Some("mailcred_operator_leader 1")
    );
    assert_eq!(
        metric(&b, "mailcred_operator_leader").await.as_deref(),
        Some("mailcred_operator_leader 0")
    );
    assert_eq!(
        status_patches_by(&state, 2),
        0,
        "the follower does not reconcile"
    );

    // The leader goes: it releases the Lease and the follower takes over.
    assert!(terminate(&mut a).await.success());
    let next = wait_for("replica-b to take the Lease", || {
        lease_held().filter(|h| h == "replica-b")
    })
    .await;
    assert_eq!(next, "replica-b");
    wait_for("replica-b to reconcile", || {
        (status_patches_by(&state, 2) > 0).then_some(())
    })
    .await;
    assert_eq!(
        metric(&b, "mailcred_operator_leader").await.as_deref(),
        Some("mailcred_operator_leader 1")
    );
    assert!(terminate(&mut b).await.success());
}
