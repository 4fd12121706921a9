//! The admission webhook end to end: real AdmissionReview JSON over HTTPS on loopback, with a
//! serving certificate from the operator's own CA code, trusted by the client through that CA.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
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

struct Webhook {
    url: String,
    client: HttpClient<Https, Full<Bytes>>,
    h2_client: HttpClient<Https, Full<Bytes>>,
    handle: axum_server::Handle<SocketAddr>,
    metrics: Metrics,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ready_credential(name: &str, service_accounts: &[&str]) -> MailCredential {
    common::credential(|v| {
        v["metadata"]["name"] = json!(name);
        v["spec"]["access"]["serviceAccounts"] = json!(service_accounts);
        v["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok", "lastTransitionTime": "2026-11-23T06:00:00Z"}]});
    })
}

async fn start(
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
    async fn post(&self, body: &Value) -> (u16, Value) {
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

    fn count(&self, outcome: &'static str) -> u64 {
        self.metrics
            .admissions
            .get_or_create(&mailcred_operator::metrics::OutcomeLabels { outcome })
            .get()
    }
}

/// Decodes `response.patch` (base64 JSON patch) and applies it to the review's pod.
fn patched_pod(review: &Value, answer: &Value) -> Value {
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

fn with_pod(mut review: Value, pod: Value) -> Value {
    review["request"]["object"] = pod;
    review
}

fn env_of(container: &Value) -> Vec<(String, String)> {
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

#[tokio::test]
async fn injects_a_native_sidecar_and_app_env_then_is_idempotent() {
    let hook = start(
        InvalidPodPolicy::Deny,
        SidecarMode::Native,
        vec![ready_credential("smtp", &["mailer"])],
    )
    .await;
    let review = fixture("pod-create.json");
    let (status, answer) = hook.post(&review).await;
    assert_eq!(status, 200);
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(answer["response"]["allowed"], true);

    let pod = patched_pod(&review, &answer);
    let typed: Pod = serde_json::from_value(pod.clone()).expect("still a valid Pod");
    let spec = typed.spec.as_ref().unwrap();
    let init = spec.init_containers.as_ref().unwrap();
    assert_eq!(init.len(), 2);
    assert_eq!(
        init[0].name, "mailcred-sidecar",
        "first, before the app's init containers"
    );
    assert_eq!(init[1].name, "migrate");
    let sidecar = serde_json::to_value(&init[0]).unwrap();
    assert_eq!(
        sidecar,
        json!({
            "name": "mailcred-sidecar",
            "image": "ghcr.io/mailcred/mailcred-sidecar:test",
            "imagePullPolicy": "IfNotPresent",
            "args": ["--credential", "smtp", "--namespace", "$(POD_NAMESPACE)"],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "MAILCRED_SERVICE_ACCOUNT", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "MAILCRED_SMTP_LISTEN", "value": "127.0.0.1:2525"},
                {"name": "MAILCRED_IMAP_LISTEN", "value": "127.0.0.1:1143"},
                {"name": "MAILCRED_ADMIN_LISTEN", "value": "127.0.0.1:15090"}
            ],
            // The only container with the ServiceAccount token (webhook_identity.rs).
            "volumeMounts": [
                {"name": "mailcred-api-token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
            ],
            "restartPolicy": "Always",
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "privileged": false,
                "readOnlyRootFilesystem": true,
                "runAsGroup": 65532,
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}
            },
            "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "10m", "memory": "32Mi"}},
            "readinessProbe": {
                "exec": {"command": ["mailcred-sidecar", "probe", "--url", "http://127.0.0.1:15090/readyz"]},
                "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3
            },
            "startupProbe": {
                "exec": {"command": ["mailcred-sidecar", "probe", "--url", "http://127.0.0.1:15090/readyz"]},
                "periodSeconds": 1, "timeoutSeconds": 2, "failureThreshold": 60
            }
        })
    );
    let want = [
        (
            "MAILCRED_SMTP_URL".to_string(),
            "smtp://127.0.0.1:2525".to_string(),
        ),
        (
            "MAILCRED_IMAP_URL".to_string(),
            "imap://127.0.0.1:1143".to_string(),
        ),
    ];
    let app = &pod["spec"]["containers"][0];
    assert_eq!(
        env_of(app)[0],
        ("LOG_LEVEL".into(), "info".into()),
        "existing env kept first"
    );
    assert_eq!(env_of(app)[1..], want);
    assert_eq!(
        env_of(&pod["spec"]["containers"][1]),
        want,
        "container without env gets it too"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["mailcred.io/injected"],
        "smtp"
    );
    assert_eq!(hook.count("injected"), 1);
    assert_eq!(hook.metrics.injections.get(), 1);

    // Reinvocation (reinvocationPolicy: IfNeeded) sees the injected pod: nothing more to add.
    let (status, again) = hook.post(&with_pod(review.clone(), pod)).await;
    assert_eq!(status, 200);
    assert_eq!(again["response"]["allowed"], true);
    assert!(
        again["response"].get("patch").is_none(),
        "idempotent: {again}"
    );
    assert_eq!(hook.count("unchanged"), 1);
    assert_eq!(
        hook.metrics.injections.get(),
        1,
        "a reinvocation is not a second injection"
    );
}

#[tokio::test]
async fn regular_container_mode_and_several_credentials() {
    let hook = start(
        InvalidPodPolicy::Deny,
        SidecarMode::Container,
        vec![
            ready_credential("smtp", &["mailer"]),
            ready_credential("imap-archive", &["mailer", "other"]),
        ],
    )
    .await;
    let mut review = fixture("pod-create.json");
    review["request"]["object"]["metadata"]["annotations"]["mailcred.io/inject"] =
        json!("smtp, imap-archive");
    let (_, answer) = hook.post(&review).await;
    let pod = patched_pod(&review, &answer);
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 3);
    let sidecar = &containers[2];
    assert_eq!(sidecar["name"], "mailcred-sidecar");
    assert!(sidecar.get("restartPolicy").is_none() && sidecar.get("startupProbe").is_none());
    assert_eq!(
        sidecar["args"],
        json!([
            "--credential",
            "smtp",
            "--credential",
            "imap-archive",
            "--namespace",
            "$(POD_NAMESPACE)"
        ])
    );
    assert_eq!(
        pod["spec"]["initContainers"].as_array().unwrap().len(),
        1,
        "init containers untouched"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["mailcred.io/injected"],
        "smtp,imap-archive"
    );

    // A later webhook added a container; reinvocation gives it the env, not a second sidecar.
    let mut pod2 = pod.clone();
    pod2["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "late", "image": "x"}));
    let (_, again) = hook.post(&with_pod(review.clone(), pod2.clone())).await;
    let pod3 = patched_pod(&with_pod(review, pod2), &again);
    assert_eq!(pod3["spec"]["containers"].as_array().unwrap().len(), 4);
    assert_eq!(env_of(&pod3["spec"]["containers"][3]).len(), 2);
}

#[tokio::test]
async fn pods_without_the_annotation_are_untouched() {
    let hook = start(InvalidPodPolicy::Deny, SidecarMode::Native, vec![]).await;
    let (status, answer) = hook.post(&fixture("pod-create-plain.json")).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["response"]["uid"],
        "0df28fbd-5f5f-11e8-bc74-36e6bb280816"
    );
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    assert!(answer["response"].get("warnings").is_none());
    assert_eq!(hook.count("skipped"), 1);
}

async fn denied(hook: &Webhook, edit: impl FnOnce(&mut Value)) -> String {
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

fn annotate(value: &str) -> impl FnOnce(&mut Value) + '_ {
    move |r| r["request"]["object"]["metadata"]["annotations"]["mailcred.io/inject"] = json!(value)
}

#[tokio::test]
async fn refusals_say_which_and_why() {
    let hook = start(
        InvalidPodPolicy::Deny,
        SidecarMode::Native,
        vec![ready_credential("smtp", &["mailer"])],
    )
    .await;

    let msg = denied(&hook, annotate("smtp,missing")).await;
    assert_eq!(
        msg,
        "mailcred: MailCredential mail/missing does not exist; create it (kubectl mailcred seal) or fix the mailcred.io/inject annotation"
    );

    let msg = denied(&hook, |r| {
        r["request"]["object"]["spec"]["serviceAccountName"] = json!("intruder")
    })
    .await;
    assert_eq!(
        msg,
        "mailcred: ServiceAccount intruder may not use MailCredential mail/smtp (spec.access.serviceAccounts: [mailer]); run the pod as one of those or add intruder to the list"
    );

    let msg = denied(&hook, |r| {
        r["request"]["object"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("serviceAccountName");
    })
    .await;
    assert!(
        msg.contains("ServiceAccount default may not use MailCredential mail/smtp"),
        "{msg}"
    );

    let msg = denied(&hook, annotate("smtp,,other")).await;
    assert_eq!(
        msg,
        "mailcred: annotation mailcred.io/inject=\"smtp,,other\" has an empty entry at position 2; write names separated by single commas"
    );

    let msg = denied(&hook, annotate("SMTP")).await;
    assert!(
        msg.contains("\"SMTP\" is not a valid MailCredential name"),
        "{msg}"
    );

    let msg = denied(&hook, annotate("smtp, smtp")).await;
    assert_eq!(
        msg,
        "mailcred: annotation mailcred.io/inject names MailCredential \"smtp\" twice; list each credential once"
    );

    let msg = denied(&hook, |r| {
        r["request"]["object"]["spec"]["hostNetwork"] = json!(true)
    })
    .await;
    assert!(
        msg.contains(
            "the pod uses hostNetwork: the sidecar's loopback listeners would be the node's"
        ),
        "{msg}"
    );

    assert_eq!(hook.count("denied"), 7);
}

#[tokio::test]
async fn admit_policy_admits_uninjected_with_a_warning() {
    let hook = start(InvalidPodPolicy::Admit, SidecarMode::Native, vec![]).await;
    let review = fixture("pod-create.json");
    let (status, answer) = hook.post(&review).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    assert_eq!(
        answer["response"]["warnings"],
        json!([
            "mailcred: MailCredential mail/smtp does not exist; create it (kubectl mailcred seal) or fix the mailcred.io/inject annotation (admitted without the mailcred sidecar)"
        ])
    );
    assert_eq!(hook.count("admitted_uninjected"), 1);
}

#[tokio::test]
async fn not_ready_credential_injects_with_a_warning() {
    let mut cred = ready_credential("smtp", &["mailer"]);
    cred.status = None;
    let hook = start(InvalidPodPolicy::Deny, SidecarMode::Native, vec![cred]).await;
    let (_, answer) = hook.post(&fixture("pod-create.json")).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"]["patch"].is_string());
    assert_eq!(
        answer["response"]["warnings"],
        json!([
            "mailcred: MailCredential mail/smtp is not Ready (the operator has not reported on it yet); the sidecar will fail until it is fixed"
        ])
    );
}

#[tokio::test]
async fn wrong_version_no_request_no_object_and_garbage_never_panic() {
    let hook = start(
        InvalidPodPolicy::Deny,
        SidecarMode::Native,
        vec![ready_credential("smtp", &["mailer"])],
    )
    .await;

    let (status, answer) = hook.post(&fixture("review-v1beta1.json")).await;
    assert_eq!(status, 400);
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(
        answer["response"]["status"]["message"],
        "mailcred: expected kind AdmissionReview, apiVersion admission.k8s.io/v1; got kind \"AdmissionReview\", apiVersion \"admission.k8s.io/v1beta1\"; set admissionReviewVersions: [\"v1\"] in the MutatingWebhookConfiguration"
    );

    let (status, answer) = hook.post(&fixture("review-no-request.json")).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["response"]["status"]["message"],
        "mailcred: AdmissionReview has no request"
    );

    let (status, answer) = hook.post(&fixture("review-no-object.json")).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["response"]["uid"],
        "3b1f1d6e-8a0c-4f43-9d2e-6f1a2b3c4d5e"
    );
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(
        answer["response"]["status"]["message"],
        "mailcred: AdmissionReview 3b1f1d6e-8a0c-4f43-9d2e-6f1a2b3c4d5e is a Pod CREATE without an object; nothing to inspect"
    );

    let (status, answer) = hook.post(&json!(["not", "a", "review"])).await;
    assert_eq!(status, 400);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("expected kind AdmissionReview")
    );

    let mut not_a_pod = fixture("pod-create.json");
    not_a_pod["request"]["object"]["spec"] = json!({"containers": "nope"});
    let (status, answer) = hook.post(&not_a_pod).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("mailcred: the object is not a valid Pod")
    );

    // Operations other than CREATE pass through untouched.
    let mut update = fixture("pod-create.json");
    update["request"]["operation"] = json!("UPDATE");
    let (status, answer) = hook.post(&update).await;
    assert_eq!(
        (status, answer["response"]["allowed"].clone()),
        (200, json!(true))
    );
    assert!(answer["response"].get("patch").is_none());

    assert_eq!(hook.count("invalid"), 3);
}

#[tokio::test]
async fn answers_over_http2_as_the_api_server_speaks_it() {
    let hook = start(
        InvalidPodPolicy::Deny,
        SidecarMode::Native,
        vec![ready_credential("smtp", &["mailer"])],
    )
    .await;
    let review = fixture("pod-create.json");
    let request = hyper::Request::post(&hook.url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&review).unwrap())))
        .unwrap();
    let response = hook
        .h2_client
        .request(request)
        .await
        .expect("HTTP/2 over TLS (ALPN h2)");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let answer: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"]["patch"].is_string());
}
