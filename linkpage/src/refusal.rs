//! Every way a link or a submission is refused, as one enum: its HTTP status, the stable
//! label the page and the audit line use, and the message the page shows. A wrong token, a
//! token of another request and an unknown name are all [`Refusal::Unknown`], with one body.

use axum::http::StatusCode;

use crate::body::BadField;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The body is malformed; the field is named.
    BadRequest(BadField),
    /// No such link: unknown namespace/name, no seal request, or the token does not match.
    Unknown,
    /// The link was used already.
    Used,
    /// The link expired.
    Expired,
    /// The credential holds a sealed secret and the request did not ask to replace it.
    AlreadySealed,
    /// The request names a key this service was not configured with.
    KeyNotConfigured,
    /// The request's spec cannot be bound (no endpoint, empty username).
    InvalidRequest,
    /// The credential changed since the page was opened (its associated data differs).
    Changed,
    /// Too many bad tokens from this client.
    RateLimited,
    /// The store did not answer, or kept conflicting.
    Unavailable,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Unknown => StatusCode::NOT_FOUND,
            Refusal::Used | Refusal::Expired => StatusCode::GONE,
            Refusal::AlreadySealed | Refusal::Changed => StatusCode::CONFLICT,
            Refusal::KeyNotConfigured | Refusal::InvalidRequest => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable label: the page picks its view by it; audit lines carry it as `reason`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::BadRequest(_) => "bad_request",
            Refusal::Unknown => "unknown",
            Refusal::Used => "used",
            Refusal::Expired => "expired",
            Refusal::AlreadySealed => "already_sealed",
            Refusal::KeyNotConfigured => "key_not_configured",
            Refusal::InvalidRequest => "invalid_request",
            Refusal::Changed => "changed",
            Refusal::RateLimited => "rate_limited",
            Refusal::Unavailable => "unavailable",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::BadRequest(f) => format!("{} is malformed: {}", f.field, f.reason),
            Refusal::Unknown => "This link is not valid. Check that you copied all of it, or ask for a new one.".into(),
            Refusal::Used => "This link was used already; a link works once. If you did not use it, tell whoever sent it.".into(),
            Refusal::Expired => "This link has expired. Ask whoever sent it for a new one.".into(),
            Refusal::AlreadySealed => "This credential already holds a password, and the link was not made to replace it. Ask for a link with --replace if you mean to change it.".into(),
            Refusal::KeyNotConfigured => "The registration service does not know the key this link seals to; ask the platform team to configure it.".into(),
            Refusal::InvalidRequest => "The credential this link is for has no usable servers or user name; ask whoever sent it.".into(),
            Refusal::Changed => "The credential changed since this page was opened. Reload the page and check the details again.".into(),
            Refusal::RateLimited => "Too many invalid links from your address. Wait a minute and try again.".into(),
            Refusal::Unavailable => "The registration service cannot reach its store right now. Try again in a minute.".into(),
        }
    }

    /// The JSON body: `{"error": label, "message": ..., "field": ...}`.
    pub fn body(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"error": self.label(), "message": self.message()});
        if let Refusal::BadRequest(f) = self {
            v["field"] = serde_json::Value::from(f.field);
        }
        v
    }
}
