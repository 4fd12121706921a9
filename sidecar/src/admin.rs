//! /healthz, /readyz and /metrics on the loopback admin port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use mailcred_core::sidecar_contract as contract;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What readiness depends on: listeners bound and every credential loaded.
pub struct AdminState {
    pub registry: Registry,
    pub listening: AtomicBool,
    pub loaded: Box<dyn Fn() -> bool + Send + Sync>,
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route(contract::HEALTH_PATH, get(|| async { "ok\n" }))
        .route(contract::READY_PATH, get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if !state.listening.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "listeners not bound yet\n");
    }
    if !(state.loaded)() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "MailCredential not loaded\n",
        );
    }
    (StatusCode::OK, "ready\n")
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics encoding failed\n".to_string(),
        ),
    }
}

pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
