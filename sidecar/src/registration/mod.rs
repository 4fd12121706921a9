//! The registration API (docs/registration-api.yaml, docs/accounts.md "Registration API"):
//! JSON over HTTP on a loopback port, for the app of this pod only (its local token).
//! `POST /v1/accounts` checks the login upstream, seals the password with an encrypt-only
//! key and creates the MailCredential in the pod's namespace and account set; `GET` lists
//! and shows accounts without secrets; `DELETE` removes one of the set.

mod args;
mod errors;
mod fields;
mod handlers;
mod login_check;
mod policy_check;
mod request;
mod seal;
mod store;
#[cfg(test)]
mod tests;
mod view;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mailcred_core::kms::DataKeySealer;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

pub use args::RegistrationArgs;
pub use errors::{ApiError, Code};
pub use login_check::{LoginChecker, UpstreamLoginChecker};
pub use seal::build_sealer;
pub use store::{AccountStore, KubeStore};

/// When an account was last used, from the account set (`AccountSet::last_used`).
pub type LastUsed = Arc<dyn Fn(&str) -> Option<SystemTime> + Send + Sync>;

/// Most accounts one `GET /v1/accounts` returns (a hard cap: `truncated: true` beyond it).
pub const MAX_LIST: u32 = 10_000;

/// Everything the API's handlers share.
pub struct RegistrationApi {
    /// The account set (label value) every account goes into and is looked up in.
    pub set: String,
    pub namespace: String,
    /// The pod's ServiceAccount: the owner label and the only entry of the access list.
    pub service_account: String,
    app_token: Zeroizing<Vec<u8>>,
    pub store: Arc<dyn AccountStore>,
    pub checker: Arc<dyn LoginChecker>,
    pub sealer: Arc<dyn DataKeySealer>,
    pub last_used: LastUsed,
    in_flight: Semaphore,
    pub request_timeout: Duration,
}

/// What [`RegistrationApi::new`] needs besides the flags.
pub struct Parts {
    pub set: String,
    pub namespace: String,
    pub service_account: String,
    pub app_token: Zeroizing<Vec<u8>>,
    pub store: Arc<dyn AccountStore>,
    pub checker: Arc<dyn LoginChecker>,
    pub sealer: Arc<dyn DataKeySealer>,
    pub last_used: LastUsed,
}

impl RegistrationApi {
    pub fn new(parts: Parts, args: &RegistrationArgs) -> Self {
        Self {
            set: parts.set,
            namespace: parts.namespace,
            service_account: parts.service_account,
            app_token: parts.app_token,
            store: parts.store,
            checker: parts.checker,
            sealer: parts.sealer,
            last_used: parts.last_used,
            in_flight: Semaphore::new(args.registration_max_in_flight.max(1)),
            request_timeout: Duration::from_secs(args.registration_timeout_seconds.max(1)),
        }
    }

    /// Constant-time comparison of the bearer token with the app token.
    fn authorized(&self, presented: Option<&[u8]>) -> bool {
        use subtle::ConstantTimeEq;
        match presented {
            Some(t) if !self.app_token.is_empty() => bool::from(t.ct_eq(&self.app_token)),
            _ => false,
        }
    }
}

/// The upstream login checker the flags ask for.
pub fn upstream_checker(args: &RegistrationArgs) -> Arc<dyn LoginChecker> {
    Arc::new(UpstreamLoginChecker {
        timeout: Duration::from_secs(args.registration_login_timeout_seconds.max(1)),
    })
}

/// The API's routes; every error, unknown routes and methods included, is the JSON error.
pub fn router(api: Arc<RegistrationApi>) -> Router {
    Router::new()
        .route("/v1/accounts", post(handlers::create).get(handlers::list))
        .route(
            "/v1/accounts/{name}",
            get(handlers::show).delete(handlers::remove),
        )
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                Code::MethodNotAllowed,
                "this method is not served here",
                "POST or GET /v1/accounts; GET or DELETE /v1/accounts/{name}",
            )
        })
        .fallback(|| async {
            ApiError::new(
                Code::NotFound,
                "no such route",
                "the routes are /v1/accounts and /v1/accounts/{name} (docs/registration-api.yaml)",
            )
        })
        .with_state(api)
}

/// Serves the API on `listener` (loopback: the caller binds it) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    api: Arc<RegistrationApi>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(api))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Seconds a client waits before retrying a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let mut response = (status, json_body(&self.body())).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A JSON body with its content type.
fn json_body(value: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (status, json_body(value)).into_response()
}
