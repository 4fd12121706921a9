//! The mutating admission webhook: HTTPS (rustls on aws-lc-rs) with POST /mutate.

pub mod account_set;
pub mod admission;
pub mod annotation;
pub mod certs;
pub mod identity;
pub mod inject;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

use crate::metrics::Metrics;
use crate::{Error, Result};
use admission::Admission;

/// AdmissionReviews carry the whole pod; the API server caps objects near 1.5 MiB, and the
/// review wraps it once or twice (object and oldObject).
const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone)]
struct WebhookState {
    admission: Arc<Admission>,
    metrics: Metrics,
}

/// Routes of the HTTPS listener.
pub fn router(admission: Arc<Admission>, metrics: Metrics) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(WebhookState { admission, metrics })
}

async fn mutate(State(s): State<WebhookState>, body: Bytes) -> Response {
    let started = Instant::now();
    let answer = s.admission.answer(&body).await;
    s.metrics
        .admitted(answer.outcome.label(), started.elapsed());
    if answer.outcome == admission::Outcome::Injected {
        s.metrics.injections.inc();
        if answer.app_token_kept {
            s.metrics.app_token_kept.inc();
        }
    }
    (answer.status, axum::Json(answer.review)).into_response()
}

/// Serves `router` over TLS on `addr` until `handle` is told to shut down.
pub async fn serve(
    addr: SocketAddr,
    config: RustlsConfig,
    router: Router,
    handle: Handle<SocketAddr>,
) -> Result<()> {
    axum_server::bind_rustls(addr, config)
        .handle(handle)
        .serve(router.into_make_service())
        .await
        .map_err(|e| Error::Io(format!("webhook listener on {addr}: {e}")))
}

/// How long in-flight reviews may take to finish at shutdown.
pub const DRAIN: Duration = Duration::from_secs(10);
/// How long the listener keeps accepting after SIGTERM, while endpoints drop this replica.
pub const ENDPOINT_PROPAGATION: Duration = Duration::from_secs(3);
