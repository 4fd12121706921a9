//! /healthz, /readyz and /metrics on the loopback admin port; /metrics alone on the optional
//! pod-IP metrics port (a scraper reaches it, the probes and nothing else do not).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use mailcred_core::metrics::scrape;
use mailcred_core::sidecar_contract as contract;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// `mailcred_build_info{version,commit} 1`: which build a pod runs, for dashboards and
/// for alerts that join on it.
pub fn register_build_info(registry: &mut Registry) {
    let info = Family::<BuildLabels, Gauge>::default();
    info.get_or_create(&BuildLabels {
        version: env!("CARGO_PKG_VERSION"),
        commit: mailcred_core::GIT_COMMIT,
    })
    .set(1);
    registry.register(
        "mailcred_build_info",
        "The sidecar's version and commit (always 1)",
        info,
    );
}

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
        .route(contract::METRICS_PATH, get(metrics))
        .with_state(state)
}

/// The pod-IP listener's routes: the metrics only.
pub fn metrics_router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route(contract::METRICS_PATH, get(metrics))
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

async fn metrics(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match scrape(&state.registry, accept) {
        Ok((content_type, text)) => (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], text),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics encoding failed\n".to_string(),
        ),
    }
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
