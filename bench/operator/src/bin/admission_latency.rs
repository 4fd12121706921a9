//! Admission latency of the webhook over HTTPS on loopback: N injecting reviews (a realistic
//! pod, the full handler: parse, annotation, cache lookup, patch, base64) against the same
//! server's trivial echo route (TLS + HTTP + body copy only) in the same run, sequential on one
//! keep-alive connection and with concurrent clients. Prints percentiles and the ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post as post_route;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::runtime::{reflector, watcher};
use mailcred_core::crd::MailCredential;
use mailcred_operator::config::{Config, InvalidPodPolicy};
use mailcred_operator::metrics::Metrics;
use mailcred_operator::webhook::admission::{Admission, Credentials};
use mailcred_operator::webhook::certs::{self, Lifetimes};
use mailcred_operator::webhook::{self, tls};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

const REVIEW: &str = include_str!("../../../../operator/tests/fixtures/pod-create.json");

#[derive(Parser)]
struct Args {
    /// Reviews per scenario.
    #[arg(long, default_value_t = 10_000)]
    reviews: usize,
    /// Concurrent clients in the concurrent scenario.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

type Https = HttpClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn credential() -> MailCredential {
    serde_json::from_value(json!({
        "apiVersion": "mailcred.io/v1alpha1", "kind": "MailCredential",
        "metadata": {"name": "smtp", "namespace": "mail", "uid": "u1", "generation": 1},
        "spec": {
            "smtp": {"host": "smtp.example.com", "port": 587, "tls": "starttls"},
            "username": "app@example.com",
            "sealedSecret": {"version": 1, "kms": {"provider": "local", "keyId": "sha256:00112233445566778899aabbccddeeff"},
                "encryptedDataKey": "AAAA", "nonce": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAAAAAAAAAAAAAAAAAAAAAA"},
            "access": {"serviceAccounts": ["mailer"]}
        },
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok", "lastTransitionTime": "2026-11-23T06:00:00Z"}]}
    }))
    .expect("credential fixture")
}

async fn post(client: &Https, url: &str, body: &Bytes) -> Duration {
    let started = Instant::now();
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .expect("request");
    let response = client.request(request).await.expect("HTTPS request");
    assert_eq!(response.status(), 200);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let took = started.elapsed();
    if url.ends_with("/mutate") {
        let answer: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert!(
            answer["response"]["patch"].is_string(),
            "every review injects"
        );
    }
    took
}

fn percentiles(mut samples: Vec<Duration>) -> [Duration; 4] {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    [
        at(0.50),
        at(0.90),
        at(0.99),
        *samples.last().expect("samples"),
    ]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn scenario(
    client: &Https,
    url: &str,
    body: &Bytes,
    n: usize,
    concurrency: usize,
) -> Vec<Duration> {
    if concurrency <= 1 {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(post(client, url, body).await);
        }
        return out;
    }
    let per = n / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_string(), body.clone());
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(per);
                for _ in 0..per {
                    out.push(post(&client, &url, &body).await);
                }
                out
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.extend(t.await.expect("client task"));
    }
    out
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lifetimes = Lifetimes {
        ca: time::Duration::days(30),
        serving: time::Duration::days(7),
        renew_before: time::Duration::days(1),
    };
    let bundle = certs::generate_bundle(
        &["localhost".into()],
        time::OffsetDateTime::now_utc(),
        &lifetimes,
    )
    .expect("certs");
    let config = tls::rustls_config(&bundle.cert, &bundle.key)
        .await
        .expect("tls");

    let (store, mut writer) = reflector::store::<MailCredential>();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(credential()));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let admission = Arc::new(Admission {
        credentials: Credentials::new(store, None),
        sidecar: Config::parse_from(["mailcred-operator"]).sidecar,
        policy: InvalidPodPolicy::Deny,
    });
    let router = webhook::router(admission, Metrics::default())
        .route("/echo", post_route(|body: Bytes| async move { body }));
    let handle = axum_server::Handle::new();
    tokio::spawn(webhook::serve(
        "127.0.0.1:0".parse().expect("addr"),
        config,
        router,
        handle.clone(),
    ));
    let addr = handle.listening().await.expect("listening");

    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(bundle.ca_bundle.as_bytes()) {
        roots.add(der.expect("ca")).expect("root");
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: Https = HttpClient::builder(TokioExecutor::new()).build(https);
    let body = Bytes::from(REVIEW);
    let base = format!("https://localhost:{}", addr.port());

    // Warm up: connections, allocator, caches.
    scenario(&client, &format!("{base}/mutate"), &body, 500, 1).await;
    scenario(&client, &format!("{base}/echo"), &body, 500, 1).await;

    println!(
        "review body: {} bytes; {} reviews per scenario",
        body.len(),
        args.reviews
    );
    println!("| scenario | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    for concurrency in [1, args.concurrency] {
        let mut p99s = Vec::new();
        for path in ["echo", "mutate"] {
            let url = format!("{base}/{path}");
            let started = Instant::now();
            let samples = scenario(&client, &url, &body, args.reviews, concurrency).await;
            let wall = started.elapsed();
            let [p50, p90, p99, max] = percentiles(samples.clone());
            println!(
                "| {path}, {concurrency} client(s) | {:.3} | {:.3} | {:.3} | {:.3} |  ({} reviews, {:.0}/s)",
                ms(p50),
                ms(p90),
                ms(p99),
                ms(max),
                samples.len(),
                samples.len() as f64 / wall.as_secs_f64()
            );
            p99s.push((p50, p99));
        }
        println!(
            "ratio mutate/echo at {concurrency} client(s): p50 {:.2}x, p99 {:.2}x; target p99 <= 10 ms: {}",
            ms(p99s[1].0) / ms(p99s[0].0),
            ms(p99s[1].1) / ms(p99s[0].1),
            if p99s[1].1 <= Duration::from_millis(10) {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    handle.shutdown();
}
