//! Plain-HTTP /healthz, /readyz and /metrics for probes and Prometheus. Kept apart from the
//! webhook listener so a TLS problem never hides the metrics that would explain it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use mailcred_core::metrics::scrape;
use prometheus_client::registry::Registry;

/// What /readyz waits for; each part flips once and stays.
#[derive(Default, Debug)]
pub struct Readiness {
    /// The webhook has a certificate and listens (or is disabled).
    pub webhook: AtomicBool,
    /// The webhook's MailCredential cache has synced (or the webhook is disabled).
    pub credential_cache: AtomicBool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.webhook.load(Ordering::Acquire) && self.credential_cache.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
pub struct HealthState {
    pub registry: Arc<Registry>,
    pub readiness: Arc<Readiness>,
}

pub fn router(state: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<HealthState>) -> impl IntoResponse {
    if s.readiness.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: webhook certificate or credential cache pending",
        )
    }
}

async fn metrics(State(s): State<HealthState>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match scrape(&s.registry, accept) {
        Ok((content_type, body)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
