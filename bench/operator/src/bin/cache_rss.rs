//! RSS of the operator's own wiring (webhook MailCredential cache + the controller with its
//! caches, reconciling every credential) with N MailCredentials, against a fake API server
//! that runs in a child process so its memory is not counted. Objects look like ones applied
//! with kubectl: managedFields and the last-applied annotation included.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use kube::Client;
use kube::runtime::reflector;
use mailcred_core::crd::MailCredential;
use mailcred_operator::controller::{self, Context};
use mailcred_operator::metrics::{Metrics, ResultLabels};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// MailCredentials in the cluster.
    #[arg(long, default_value_t = 10_000, global = true)]
    credentials: usize,
    /// Namespaces they are spread over.
    #[arg(long, default_value_t = 100, global = true)]
    namespaces: usize,
    /// Label every credential into this account set (one shared Role per namespace).
    #[arg(long, global = true)]
    account_set: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// (internal) the fake API server child process.
    FakeApi,
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn namespace(i: usize, namespaces: usize) -> String {
    format!("team-{}", i % namespaces.max(1))
}

/// How the fake cluster is shaped.
#[derive(Clone)]
struct Shape {
    namespaces: usize,
    account_set: Option<String>,
}

fn credential(i: usize, shape: &Shape) -> Value {
    let name = format!("mail-{i}");
    let ns = namespace(i, shape.namespaces);
    let spec = json!({
        "smtp": {"host": "smtp.office365.com", "port": 587, "tls": "starttls"},
        "imap": {"host": "outlook.office365.com", "port": 993, "tls": "implicit"},
        "username": format!("app-{i}@example.com"),
        "sealedSecret": {
            "version": 1,
            "kms": {"provider": "aws", "keyId": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
            "encryptedDataKey": "A".repeat(248),
            "nonce": "AAAAAAAAAAAAAAAA",
            "ciphertext": "A".repeat(64)
        },
        "policy": {"smtp": {"allowedSenders": [format!("app-{i}@example.com")], "allowedRecipients": ["*@example.com"]}},
        "access": {"serviceAccounts": ["mailer", "reporter"]}
    });
    let last_applied = json!({"apiVersion": "mailcred.io/v1alpha1", "kind": "MailCredential", "metadata": {"name": name, "namespace": ns}, "spec": spec});
    let labels = match &shape.account_set {
        Some(set) => json!({"mailcred.io/account-set": set}),
        None => json!({}),
    };
    json!({
        "apiVersion": "mailcred.io/v1alpha1",
        "kind": "MailCredential",
        "metadata": {
            "name": name, "namespace": ns, "labels": labels,
            "uid": format!("00000000-0000-4000-8000-{i:012}"),
            "resourceVersion": format!("{}", 1000 + i), "generation": 1,
            "creationTimestamp": "2026-11-01T00:00:00Z",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied.to_string()},
            "managedFields": [{
                "manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "mailcred.io/v1alpha1",
                "time": "2026-11-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                             "f:spec": {".": {}, "f:access": {}, "f:imap": {}, "f:policy": {}, "f:sealedSecret": {}, "f:smtp": {}, "f:username": {}}}
            }]
        },
        "spec": spec
    })
}

struct Fake {
    items: Vec<Value>,
    shape: Shape,
    /// Role and RoleBinding applies received, and the distinct objects they named.
    rbac_patches: std::sync::atomic::AtomicUsize,
    rbac_objects: std::sync::Mutex<std::collections::BTreeSet<String>>,
    requests: std::sync::atomic::AtomicUsize,
}

async fn api(State(fake): State<Arc<Fake>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("");
    let json_response = |code: StatusCode, v: Value| {
        (code, [("content-type", "application/json")], v.to_string()).into_response()
    };
    fake.requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if path == "/bench/counts" {
        let objects = fake.rbac_objects.lock().map(|o| o.len()).unwrap_or(0);
        return json_response(
            StatusCode::OK,
            json!({
                "rbac_patches": fake.rbac_patches.load(std::sync::atomic::Ordering::Relaxed),
                "rbac_objects": objects,
                "requests": fake.requests.load(std::sync::atomic::Ordering::Relaxed),
            }),
        );
    }
    if method == Method::GET && query.contains("watch=true") {
        // An open watch with no changes: the cluster is quiet.
        let pending = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            Body::from_stream(pending),
        )
            .into_response();
    }
    match (method.as_str(), path.as_str()) {
        ("GET", "/apis/mailcred.io/v1alpha1/mailcredentials") => {
            // Paginated like a real API server: `limit` items from the `continue` offset.
            let param = |key: &str| {
                query.split('&').find_map(|kv| {
                    kv.strip_prefix(key)
                        .and_then(|v| v.strip_prefix('='))
                        .and_then(|v| v.parse::<usize>().ok())
                })
            };
            let limit = param("limit").unwrap_or(fake.items.len()).max(1);
            let offset = param("continue").unwrap_or(0).min(fake.items.len());
            let end = (offset + limit).min(fake.items.len());
            let mut metadata = json!({"resourceVersion": "50000"});
            if end < fake.items.len() {
                metadata["continue"] = json!(end.to_string());
            }
            let page = json!({"apiVersion": "mailcred.io/v1alpha1", "kind": "MailCredentialList", "metadata": metadata, "items": &fake.items[offset..end]});
            json_response(StatusCode::OK, page)
        }
        ("GET", "/apis/rbac.authorization.k8s.io/v1/roles") => json_response(
            StatusCode::OK,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleList", "metadata": {"resourceVersion": "1"}, "items": []}),
        ),
        ("GET", "/apis/rbac.authorization.k8s.io/v1/rolebindings") => json_response(
            StatusCode::OK,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBindingList", "metadata": {"resourceVersion": "1"}, "items": []}),
        ),
        ("PATCH", p) if p.ends_with("/status") => {
            let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let index: usize = p
                .split('/')
                .nth_back(1)
                .and_then(|n| n.strip_prefix("mail-"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let mut obj = credential(index, &fake.shape);
            obj["status"] = sent["status"].clone();
            json_response(StatusCode::OK, obj)
        }
        ("PATCH", p) => {
            if p.contains("/roles/") || p.contains("/rolebindings/") {
                fake.rbac_patches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Ok(mut o) = fake.rbac_objects.lock() {
                    o.insert(p.to_string());
                }
            }
            (StatusCode::OK, [("content-type", "application/json")], body).into_response()
        }
        ("POST", p) if p.ends_with("/events") => (
            StatusCode::CREATED,
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound", "message": format!("{method} {path}")}),
        ),
    }
}

async fn fake_api(n: usize, shape: Shape) {
    let fake = Arc::new(Fake {
        items: (0..n).map(|i| credential(i, &shape)).collect(),
        shape,
        rbac_patches: Default::default(),
        rbac_objects: Default::default(),
        requests: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!("{}", listener.local_addr().expect("addr").port());
    let router = Router::new().fallback(api).with_state(fake);
    axum::serve(listener, router).await.expect("serve");
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let shape = Shape {
        namespaces: args.namespaces,
        account_set: args.account_set.clone(),
    };
    if let Some(Cmd::FakeApi) = args.command {
        fake_api(args.credentials, shape).await;
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .args(["fake-api", "--credentials", &args.credentials.to_string()])
        .args(["--namespaces", &args.namespaces.to_string()])
        .args(
            args.account_set
                .iter()
                .flat_map(|s| ["--account-set".to_string(), s.clone()]),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("fake API child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    let port: u16 = line.trim().parse().expect("port number");

    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().expect("url"));
    let client = Client::try_from(config).expect("client");
    let rss_start = rss_kib("VmRSS:");

    // The webhook's cache, exactly as main.rs builds it.
    let (store, writer) = reflector::store::<MailCredential>();
    let stream = mailcred_operator::cache::credentials(client.clone(), writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    let started = Instant::now();
    store.wait_until_ready().await.expect("cache ready");
    let cached = store.state().len();
    let rss_cache = rss_kib("VmRSS:");

    // The controller: its own caches, and one reconcile per credential.
    let metrics = Metrics::default();
    let ctx = Arc::new(Context::new(
        client.clone(),
        "bench".into(),
        metrics.clone(),
        Duration::from_secs(3600),
    ));
    let token = CancellationToken::new();
    tokio::spawn(controller::run(ctx, token.clone()));
    let ok = metrics
        .reconciles
        .get_or_create(&ResultLabels { result: "ok" })
        .clone();
    let deadline = Instant::now() + Duration::from_secs(900);
    while (ok.get() as usize) < args.credentials && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reconciled = ok.get();
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_end = rss_kib("VmRSS:");
    let hwm = rss_kib("VmHWM:");
    let counts: Value = match http::Request::get("/bench/counts").body(Vec::new()) {
        Ok(req) => client
            .request_text(req)
            .await
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    token.cancel();
    let _ = child.kill();
    let _ = child.wait();

    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "credentials: {} in {} namespace(s), account set: {} (webhook cache held {cached}); reconciled ok: {reconciled} in {:.1} s",
        args.credentials,
        args.namespaces,
        args.account_set.as_deref().unwrap_or("none"),
        took.as_secs_f64()
    );
    println!(
        "Roles + RoleBindings created: {}; RBAC applies sent: {}; API requests in all: {}; wall time per credential reconciled: {:.2} ms",
        counts["rbac_objects"],
        counts["rbac_patches"],
        counts["requests"],
        took.as_secs_f64() * 1000.0 / args.credentials.max(1) as f64
    );
    println!("| point | RSS MiB |");
    println!("|---|---|");
    println!("| client built, nothing cached | {:.1} |", mib(rss_start));
    println!("| webhook cache synced | {:.1} |", mib(rss_cache));
    println!(
        "| controller caches + every credential reconciled | {:.1} |",
        mib(rss_end)
    );
    println!("| peak (VmHWM) | {:.1} |", mib(hwm));
    println!(
        "per 1,000 credentials above the empty process: {:.2} MiB; end/start ratio {:.2}x; target <= 128 MiB: {}",
        mib(rss_end.saturating_sub(rss_start)) * 1000.0 / args.credentials as f64,
        rss_end as f64 / rss_start.max(1) as f64,
        if mib(hwm) <= 128.0 { "met" } else { "MISSED" }
    );
}
