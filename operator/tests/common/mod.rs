//! Test support: a recording fake of the Kubernetes API on kube's mock service (tower-test),
//! and MailCredential fixtures. Each test asserts the exact requests the code under test made.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use mailcred_core::crd::MailCredential;
use serde_json::{Value, json};
use tower_test::mock;

pub mod apiserver;
pub mod injected;

/// One request as the API server would have seen it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub body: Value,
}

pub type Log = Arc<Mutex<Vec<Recorded>>>;

/// A client whose requests are answered by `respond` (status code, JSON body) and logged.
pub fn fake_client<F>(respond: F) -> (Client, Log)
where
    F: Fn(&Recorded) -> (u16, Value) + Send + 'static,
{
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let log: Log = Arc::default();
    let task_log = log.clone();
    tokio::spawn(async move {
        let mut handle = std::pin::pin!(handle);
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .expect("request body");
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("request body is JSON")
            };
            let recorded = Recorded { method, uri, body };
            let (code, reply) = respond(&recorded);
            task_log.lock().unwrap().push(recorded);
            send.send_response(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), log)
}

/// What a healthy API server answers: the object sent (creates, applies), 201 for POST.
pub fn echo(r: &Recorded) -> (u16, Value) {
    match r.method.as_str() {
        "POST" => (201, r.body.clone()),
        // A status patch answers with the whole object.
        "PATCH" if r.uri.contains("/status?") => {
            let mut obj = credential_json();
            obj["status"] = r.body["status"].clone();
            (200, obj)
        }
        _ => (200, r.body.clone()),
    }
}

/// A Kubernetes Status error body.
pub fn status_error(code: u16, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message})
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A credential whose sealed secret parses (sizes and encodings right; never decrypted here).
pub fn credential_json() -> Value {
    json!({
        "apiVersion": "mailcred.io/v1alpha1",
        "kind": "MailCredential",
        "metadata": {
            "name": "smtp",
            "namespace": "mail",
            "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "generation": 1,
            "resourceVersion": "100"
        },
        "spec": {
            "smtp": {"host": "smtp.example.com", "port": 587, "tls": "starttls"},
            "imap": {"host": "imap.example.com", "port": 993, "tls": "implicit"},
            "username": "app@example.com",
            "sealedSecret": {
                "version": 1,
                "kms": {"provider": "local", "keyId": "sha256:00112233445566778899aabbccddeeff"},
                "encryptedDataKey": b64(&[7u8; 60]),
                "nonce": b64(&[1u8; 12]),
                "ciphertext": b64(&[2u8; 80])
            },
            "policy": {
                "smtp": {"allowedSenders": ["app@example.com", "*@example.com"], "allowedRecipients": ["*"]},
                "imap": {"allowedMailboxes": ["INBOX", "Archive/*"]}
            },
            "access": {"serviceAccounts": ["mailer", "reporter"]}
        }
    })
}

pub fn credential(edit: impl FnOnce(&mut Value)) -> MailCredential {
    let mut v = credential_json();
    edit(&mut v);
    serde_json::from_value(v).expect("fixture is a MailCredential")
}
