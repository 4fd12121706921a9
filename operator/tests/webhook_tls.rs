//! Self-managed webhook TLS against kube's mock API: the Secret is created, reused, renewed
//! with optimistic concurrency, and caBundle is patched into the webhook configuration.

mod common;

use std::sync::{Arc, Mutex};

use base64::Engine;
use common::{fake_client, status_error};
use mailcred_operator::webhook::certs::{self, CertBundle, Lifetimes, service_dns_names};
use mailcred_operator::webhook::tls::{self, SelfSigned};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

const SECRET_URI: &str = "/api/v1/namespaces/mailcred-system/secrets/mailcred-operator-webhook-tls";
const SECRETS_URI: &str = "/api/v1/namespaces/mailcred-system/secrets?";
const CONFIG_URI: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/mailcred-operator";

fn lifetimes() -> Lifetimes {
    Lifetimes {
        ca: Duration::days(3650),
        serving: Duration::days(365),
        renew_before: Duration::days(30),
    }
}

fn settings() -> SelfSigned {
    SelfSigned {
        namespace: "mailcred-system".into(),
        secret: "mailcred-operator-webhook-tls".into(),
        webhook_config: "mailcred-operator".into(),
        dns_names: service_dns_names("mailcred-operator-webhook", "mailcred-system"),
        lifetimes: lifetimes(),
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(v: &Value) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

fn secret_json(bundle: &CertBundle, resource_version: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "mailcred-operator-webhook-tls", "namespace": "mailcred-system", "resourceVersion": resource_version},
        "data": {"ca.crt": b64(&bundle.ca_bundle), "ca.key": b64(&bundle.ca_key), "tls.crt": b64(&bundle.cert), "tls.key": b64(&bundle.key)}
    })
}

fn bundle_of(secret: &Value) -> CertBundle {
    let d = &secret["data"];
    CertBundle {
        ca_bundle: unb64(&d["ca.crt"]),
        ca_key: unb64(&d["ca.key"]),
        cert: unb64(&d["tls.crt"]),
        key: unb64(&d["tls.key"]),
    }
}

fn not_found() -> (u16, Value) {
    (404, status_error(404, "NotFound", "not found"))
}

#[tokio::test]
async fn creates_the_secret_when_missing() {
    let (client, log) = fake_client(|r| match (r.method.as_str(), r.uri.as_str()) {
        ("GET", SECRET_URI) => not_found(),
        ("POST", SECRETS_URI) => (201, r.body.clone()),
        _ => panic!("unexpected {} {}", r.method, r.uri),
    });
    let now = OffsetDateTime::now_utc();
    let bundle = tls::ensure_secret(&client, &settings(), now).await.unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2);
    let created = &log[1].body;
    assert_eq!(
        created["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "mailcred-operator"
    );
    assert_eq!(
        bundle_of(created),
        bundle,
        "what is stored is what is served"
    );
    let leaf = &certs::inspect(&bundle.cert).unwrap()[0];
    assert_eq!(leaf.dns_names, settings().dns_names);
    assert_eq!(
        certs::renewal_needed(&bundle, &settings().dns_names, now, &lifetimes()),
        certs::Renewal::None
    );
}

#[tokio::test]
async fn reuses_a_valid_secret_without_writing() {
    let now = OffsetDateTime::now_utc();
    let existing = certs::generate_bundle(&settings().dns_names, now, &lifetimes()).unwrap();
    let stored = secret_json(&existing, "5");
    let (client, log) = fake_client(move |r| match (r.method.as_str(), r.uri.as_str()) {
        ("GET", SECRET_URI) => (200, stored.clone()),
        _ => panic!("unexpected {} {}", r.method, r.uri),
    });
    let bundle = tls::ensure_secret(&client, &settings(), now).await.unwrap();
    assert_eq!(bundle, existing);
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn renews_an_expiring_serving_certificate_with_the_same_ca() {
    let issued = OffsetDateTime::now_utc() - Duration::days(340);
    let existing = certs::generate_bundle(&settings().dns_names, issued, &lifetimes()).unwrap();
    let stored = secret_json(&existing, "5");
    let (client, log) = fake_client(move |r| match (r.method.as_str(), r.uri.as_str()) {
        ("GET", SECRET_URI) => (200, stored.clone()),
        ("PUT", u) if u.starts_with(SECRET_URI) => (200, r.body.clone()),
        _ => panic!("unexpected {} {}", r.method, r.uri),
    });
    let now = OffsetDateTime::now_utc();
    let bundle = tls::ensure_secret(&client, &settings(), now).await.unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1].body["metadata"]["resourceVersion"], "5",
        "replace is conditional on what was read"
    );
    assert_eq!(bundle.ca_bundle, existing.ca_bundle);
    assert_eq!(bundle.ca_key, existing.ca_key);
    assert_ne!(bundle.cert, existing.cert);
    assert_eq!(bundle_of(&log[1].body), bundle);
    assert!(certs::inspect(&bundle.cert).unwrap()[0].not_after > now + Duration::days(300));
}

#[tokio::test]
async fn losing_a_creation_race_adopts_the_winners_secret() {
    let now = OffsetDateTime::now_utc();
    let winner = certs::generate_bundle(&settings().dns_names, now, &lifetimes()).unwrap();
    let winner_json = secret_json(&winner, "9");
    let gets = Arc::new(Mutex::new(0));
    let (client, log) = fake_client(move |r| match (r.method.as_str(), r.uri.as_str()) {
        ("GET", SECRET_URI) => {
            let mut n = gets.lock().unwrap();
            *n += 1;
            if *n == 1 {
                not_found()
            } else {
                (200, winner_json.clone())
            }
        }
        ("POST", SECRETS_URI) => (
            409,
            status_error(
                409,
                "AlreadyExists",
                "secrets \"mailcred-operator-webhook-tls\" already exists",
            ),
        ),
        _ => panic!("unexpected {} {}", r.method, r.uri),
    });
    let bundle = tls::ensure_secret(&client, &settings(), now).await.unwrap();
    assert_eq!(bundle, winner);
    let calls: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(calls, ["GET", "POST", "GET"]);
}

fn webhook_config(first_ca: Option<&str>) -> Value {
    let mut first = json!({"name": "inject.mailcred.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
        "clientConfig": {"service": {"name": "mailcred-operator-webhook", "namespace": "mailcred-system", "path": "/mutate"}}});
    if let Some(ca) = first_ca {
        first["clientConfig"]["caBundle"] = json!(b64(ca));
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "mailcred-operator"},
        "webhooks": [
            first,
            {"name": "already.mailcred.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
             "clientConfig": {"caBundle": b64("NEW CA PEM"), "service": {"name": "mailcred-operator-webhook", "namespace": "mailcred-system"}}}
        ]
    })
}

#[tokio::test]
async fn patches_ca_bundle_into_each_webhook_that_lacks_it() {
    let config = webhook_config(Some("OLD CA PEM"));
    let (client, log) = fake_client(move |r| match (r.method.as_str(), r.uri.as_str()) {
        ("GET", CONFIG_URI) => (200, config.clone()),
        ("PATCH", u) if u.starts_with(CONFIG_URI) => (200, config.clone()),
        _ => panic!("unexpected {} {}", r.method, r.uri),
    });
    assert!(
        tls::patch_ca_bundle(&client, "mailcred-operator", "NEW CA PEM")
            .await
            .unwrap()
    );
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].method, "PATCH");
    assert_eq!(
        log[1].body,
        json!([
            {"op": "test", "path": "/webhooks/0/name", "value": "inject.mailcred.io"},
            {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": b64("NEW CA PEM")}
        ]),
        "only the webhook whose caBundle differs"
    );
}

#[tokio::test]
async fn current_ca_bundle_is_not_patched_again() {
    let config = webhook_config(Some("NEW CA PEM"));
    let (client, log) = fake_client(move |r| match (r.method.as_str(), r.uri.as_str()) {
        ("GET", CONFIG_URI) => (200, config.clone()),
        _ => panic!("unexpected {} {}", r.method, r.uri),
    });
    assert!(
        !tls::patch_ca_bundle(&client, "mailcred-operator", "NEW CA PEM")
            .await
            .unwrap()
    );
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn missing_webhook_configuration_is_not_an_error() {
    let (client, _log) = fake_client(|r| match r.method.as_str() {
        "GET" => not_found(),
        _ => panic!("unexpected {} {}", r.method, r.uri),
    });
    assert!(
        !tls::patch_ca_bundle(&client, "mailcred-operator", "CA")
            .await
            .unwrap()
    );
}
