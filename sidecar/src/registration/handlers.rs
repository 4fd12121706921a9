//! The four operations. Each starts with the same admission: the app token (401), then a
//! slot among the in-flight bound (503 + Retry-After), then the per-request timeout (504).

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mailcred_core::crd::{EndpointKind, MailCredential};
use mailcred_core::{UpstreamAuth, accounts};
use serde_json::json;
use tokio::sync::SemaphorePermit;
use zeroize::Zeroizing;

use super::errors::{ApiError, Code};
use super::request::{self, MAX_BODY_BYTES};
use super::seal::{Owner, sealed_resource};
use super::store::StoreError;
use super::{MAX_LIST, RegistrationApi, json_response, login_check, view};

const LOG_TARGET: &str = "mailcred::registration";

fn admit<'a>(
    api: &'a RegistrationApi,
    headers: &HeaderMap,
) -> Result<SemaphorePermit<'a>, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .and_then(|v| {
            v.strip_prefix(b"Bearer ")
                .or_else(|| v.strip_prefix(b"bearer "))
        });
    if !api.authorized(token) {
        return Err(ApiError::new(
            Code::Unauthorized,
            "missing or wrong app token",
            "send Authorization: Bearer <the app token> (the file named by MAILCRED_APP_TOKEN_FILE)",
        ));
    }
    api.in_flight.try_acquire().map_err(|_| {
        ApiError::new(
            Code::Busy,
            "too many registration requests at once",
            "retry after the Retry-After seconds",
        )
    })
}

fn timed_out() -> ApiError {
    ApiError::new(
        Code::Timeout,
        "the request took longer than its bound",
        "retry; if it keeps failing the mail server or KMS is slow (nothing was stored)",
    )
}

/// A store call bounded by the request timeout (504 when it runs over).
async fn bounded<T>(
    api: &RegistrationApi,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(api.request_timeout, call)
        .await
        .map_err(|_| timed_out())?
        .map_err(store_error)
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists => ApiError::new(
            Code::AlreadyExists,
            "an account of that name exists already",
            "choose another name, or leave name out for a generated one",
        )
        .at("name"),
        StoreError::Unavailable(m) => ApiError::new(
            Code::StoreUnavailable,
            m,
            "retry later: the Kubernetes API did not answer",
        ),
        StoreError::Refused(m) => ApiError::new(
            Code::StoreRefused,
            m,
            "the sidecar may not do this in its namespace: check the chart's RBAC and admission policy for account sets",
        ),
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// `acct-` and 10 random lowercase hex digits.
fn generated_name() -> Result<String, ApiError> {
    let mut bytes = [0u8; 5];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError::new(
            Code::StoreUnavailable,
            format!("no randomness for a name: {e}"),
            "give a name",
        )
    })?;
    Ok(format!(
        "acct-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

pub async fn create(
    State(api): State<Arc<RegistrationApi>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let _permit = admit(&api, &headers)?;
        let resource = tokio::time::timeout(api.request_timeout, prepare(&api, &headers, body))
            .await
            .map_err(|_| timed_out())??;
        // Not under the timeout, and in its own task: once the create is sent it runs to its
        // end even if the client goes away, so the outcome is never unknown to the store.
        let store = Arc::clone(&api.store);
        tokio::spawn(async move { store.create(&resource).await })
            .await
            .map_err(|e| {
                ApiError::new(
                    Code::StoreUnavailable,
                    format!("the create task failed: {e}"),
                    "retry",
                )
            })?
            .map_err(store_error)
    }
    .await;
    match result {
        Ok(created) => {
            let name = created.metadata.name.clone().unwrap_or_default();
            tracing::info!(target: LOG_TARGET, account = %name, set = %api.set, outcome = "created", "account registered");
            let mut reply = json!({"name": name, "username": created.spec.username});
            if let Some(end) = &created.spec.expires_at {
                reply["expiresAt"] = json!(end.0.to_string());
            }
            let mut response = json_response(StatusCode::CREATED, &reply);
            if let Ok(location) = format!("/v1/accounts/{name}").parse() {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(e) => {
            tracing::info!(target: LOG_TARGET, set = %api.set, outcome = e.code.as_str(), field = e.field.as_deref().unwrap_or(""), "registration refused");
            e.into_response()
        }
    }
}

/// Everything before the create: the body, its checks, the login check, the seal.
async fn prepare(
    api: &RegistrationApi,
    headers: &HeaderMap,
    body: Body,
) -> Result<MailCredential, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "the body must be application/json",
            "send Content-Type: application/json",
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(request::too_large());
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| request::too_large())?;
    let bytes = Zeroizing::new(bytes.to_vec());
    let registration = request::parse(&bytes)?;
    drop(bytes);
    let name = match &registration.name {
        Some(n) => n.clone(),
        None => generated_name()?,
    };
    // Early 409 before anyone logs in upstream; the create's AlreadyExists covers races.
    if api.store.get(&name).await.map_err(store_error)?.is_some() {
        return Err(store_error(StoreError::AlreadyExists));
    }
    let auth = UpstreamAuth::Password(registration.password.duplicate());
    let endpoints = [
        (EndpointKind::Smtp, registration.smtp.as_ref()),
        (EndpointKind::Imap, registration.imap.as_ref()),
    ];
    for (kind, endpoint) in endpoints {
        if let Some(endpoint) = endpoint {
            api.checker
                .check(kind, endpoint, &registration.username, &auth)
                .await
                .map_err(|e| {
                    login_check::to_api_error(kind, e).without(registration.password.expose())
                })?;
        }
    }
    drop(auth);
    let owner = Owner {
        namespace: &api.namespace,
        set: &api.set,
        service_account: &api.service_account,
    };
    // `registration` (the password) is dropped, and zeroized, when this returns.
    sealed_resource(
        api.sealer.as_ref(),
        &registration,
        &name,
        &owner,
        SystemTime::now(),
    )
    .await
}

pub async fn list(State(api): State<Arc<RegistrationApi>>, headers: HeaderMap) -> Response {
    let result = async {
        let _permit = admit(&api, &headers)?;
        let selector = accounts::label_selector(&api.set);
        let listed = bounded(&api, api.store.list(&selector, MAX_LIST)).await?;
        let now = now();
        let items: Vec<_> = listed
            .items
            .iter()
            .filter(|r| view::visible(r, &api.set, &api.service_account))
            .map(|r| {
                let name = r.metadata.name.as_deref().unwrap_or_default();
                view::account(r, &now, (api.last_used)(name))
            })
            .collect();
        Ok::<_, ApiError>(json!({"accounts": items, "truncated": listed.truncated}))
    }
    .await;
    match result {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => e.into_response(),
    }
}

/// The account `name` of this set for this pod, or 404 (absent, another set's, or for another
/// ServiceAccount: indistinguishable).
async fn lookup(api: &RegistrationApi, name: &str) -> Result<MailCredential, ApiError> {
    let not_found = || {
        ApiError::new(
            Code::NotFound,
            "no account of that name in this account set",
            "list the accounts with GET /v1/accounts",
        )
    };
    if !mailcred_core::names::is_dns_subdomain(name) {
        return Err(not_found());
    }
    bounded(api, api.store.get(name))
        .await?
        .filter(|r| view::visible(r, &api.set, &api.service_account))
        .ok_or_else(not_found)
}

pub async fn show(
    State(api): State<Arc<RegistrationApi>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let _permit = admit(&api, &headers)?;
        let resource = lookup(&api, &name).await?;
        Ok::<_, ApiError>(view::account(&resource, &now(), (api.last_used)(&name)))
    }
    .await;
    match result {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => e.into_response(),
    }
}

pub async fn remove(
    State(api): State<Arc<RegistrationApi>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    match delete(&api, &name, &headers).await {
        Ok(()) => {
            tracing::info!(target: LOG_TARGET, account = %name, set = %api.set, outcome = "deleted", "account deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The account `name` deleted, if this pod may see it and it is still there.
async fn delete(api: &RegistrationApi, name: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let _permit = admit(api, headers)?;
    let resource = lookup(api, name).await?;
    let uid = resource.metadata.uid.as_deref();
    if bounded(api, api.store.delete(name, uid)).await? {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::NotFound,
            "the account is gone already",
            "list the accounts with GET /v1/accounts",
        ))
    }
}
