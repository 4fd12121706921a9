//! The fake cluster: one shared state (MailCredentials, the webhook Secret and configuration,
//! the Lease) served over plain HTTP on loopback, recording every request with the id of the
//! endpoint it came through, so two operator processes can share one cluster.

use std::sync::{Arc, Mutex};

use crate::common;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Default)]
pub struct FakeState {
    /// (server id, method, path?query, body)
    pub requests: Vec<(usize, String, String, Value)>,
    pub secret: Option<Value>,
    pub webhook_config: Value,
    pub lease: Option<Value>,
}

pub type Shared = Arc<Mutex<FakeState>>;

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

pub fn fake_cluster() -> Shared {
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
pub async fn serve_api(state: &Shared, id: usize) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = Router::new().fallback(api).with_state(Server {
        state: state.clone(),
        id,
    });
    tokio::spawn(axum::serve(listener, router).into_future());
    port
}

pub fn status_patches_by(state: &Shared, id: usize) -> usize {
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
