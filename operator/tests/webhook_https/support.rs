//! What the webhook tests share: the webhook served over HTTPS on loopback with a certificate
//! from the operator's CA code, HTTP/1.1 and HTTP/2 clients trusting that CA, the review
//! fixtures, and readers for the patch and the refusal message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::common;
use base64::Engine;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::runtime::{reflector, watcher};
use mailcred_core::crd::MailCredential;
use mailcred_operator::config::{Config, InvalidPodPolicy, SidecarMode};
use mailcred_operator::metrics::Metrics;
use mailcred_operator::webhook::admission::{Admission, Credentials};
use mailcred_operator::webhook::certs::{self, Lifetimes};
use mailcred_operator::webhook::{self, tls};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

pub struct Webhook {
    pub url: String,
    client: HttpClient<Https, Full<Bytes>>,
    pub h2_client: HttpClient<Https, Full<Bytes>>,
    handle: axum_server::Handle<SocketAddr>,
    pub metrics: Metrics,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn ready_credential(name: &str, service_accounts: &[&str]) -> MailCredential {
    common::credential(|v| {
        v["metadata"]["name"] = json!(name);
        v["spec"]["access"]["serviceAccounts"] = json!(service_accounts);
        v["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok", "lastTransitionTime": "2026-11-23T06:00:00Z"}]});
    })
}

pub async fn start(
    policy: InvalidPodPolicy,
    mode: SidecarMode,
    credentials: Vec<MailCredential>,
) -> Webhook {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lifetimes = Lifetimes {
        ca: time::Duration::days(30),
        serving: time::Duration::days(7),
        renew_before: time::Duration::days(1),
    };
    let bundle = certs::generate_bundle(
        &["localhost".to_string()],
        time::OffsetDateTime::now_utc(),
        &lifetimes,
    )
    .unwrap();
    let tls_config = tls::rustls_config(&bundle.cert, &bundle.key).await.unwrap();

    let (store, mut writer) = reflector::store::<MailCredential>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for c in credentials {
        writer.apply_watcher_event(&watcher::Event::InitApply(c));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);

    let mut sidecar = Config::parse_from(["mailcred-operator"]).sidecar;
    sidecar.sidecar_mode = mode;
    sidecar.sidecar_image = "ghcr.io/mailcred/mailcred-sidecar:test".into();
    let admission = Arc::new(Admission {
        credentials: Credentials::new(store, None),
        sidecar,
        policy,
    });
    let metrics = Metrics::default();
    let handle = axum_server::Handle::new();
    let router = webhook::router(admission, metrics.clone());
    tokio::spawn(webhook::serve(
        "127.0.0.1:0".parse().unwrap(),
        tls_config,
        router,
        handle.clone(),
    ));
    let addr = handle.listening().await.expect("webhook listens");

    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(bundle.ca_bundle.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let h2_tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    // HTTP/2 only: the API server's webhook client negotiates h2 through ALPN.
    let h2 = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(h2_tls)
        .https_only()
        .enable_http2()
        .build();
    Webhook {
        url: format!("https://localhost:{}/mutate", addr.port()),
        client: HttpClient::builder(TokioExecutor::new()).build(https),
        h2_client: HttpClient::builder(TokioExecutor::new())
            .http2_only(true)
            .build(h2),
        handle,
        metrics,
    }
}

impl Webhook {
    pub async fn post(&self, body: &Value) -> (u16, Value) {
        let request = hyper::Request::post(&self.url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .expect("answer within the webhook timeout")
            .expect("HTTPS request");
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).expect("JSON answer"))
    }

    pub fn count(&self, outcome: &'static str) -> u64 {
        self.metrics
            .admissions
            .get_or_create(&mailcred_operator::metrics::OutcomeLabels { outcome })
            .get()
    }
}

/// Decodes `response.patch` (base64 JSON patch) and applies it to the review's pod.
pub fn patched_pod(review: &Value, answer: &Value) -> Value {
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let b64 = answer["response"]["patch"]
        .as_str()
        .expect("patch is a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut pod = review["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).expect("patch applies to the pod");
    pod
}

pub fn with_pod(mut review: Value, pod: Value) -> Value {
    review["request"]["object"] = pod;
    review
}

pub fn env_of(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

pub async fn denied(hook: &Webhook, edit: impl FnOnce(&mut Value)) -> String {
    let mut review = fixture("pod-create.json");
    edit(&mut review);
    let (status, answer) = hook.post(&review).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert!(answer["response"].get("patch").is_none());
    answer["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn annotate(value: &str) -> impl FnOnce(&mut Value) + '_ {
    move |r| r["request"]["object"]["metadata"]["annotations"]["mailcred.io/inject"] = json!(value)
}
