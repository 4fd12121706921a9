//! The one error shape of the registration API:
//! `{"error":{"code":"<snake_case>","field":"<json path>"|null,"message":"...","fix":"..."}}`.
//! Codes are an enum, so clients match on them and docs/registration-api.yaml lists them all.
//! No message is ever built from the password (request.rs and the login check see to that).

// `http`, not `axum::http`: the fuzz crate compiles this file (and request.rs) without axum.
use http::StatusCode;
use serde_json::json;

/// Every error code the API answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    Unauthorized,
    UnsupportedMediaType,
    BodyTooLarge,
    MalformedJson,
    UnknownField,
    MissingField,
    InvalidField,
    InvalidName,
    InvalidHost,
    InvalidPort,
    InvalidTls,
    InvalidCaPem,
    PasswordTooLong,
    InvalidPassword,
    InvalidPolicy,
    InvalidLifetime,
    NoEndpoint,
    AlreadyExists,
    NotFound,
    MethodNotAllowed,
    LoginFailed,
    UpstreamUnreachable,
    UpstreamTls,
    UpstreamTimeout,
    UpstreamUnsupported,
    UpstreamProtocol,
    SealFailed,
    StoreUnavailable,
    StoreRefused,
    Busy,
    Timeout,
}

impl Code {
    /// Every code: the tests check each against docs/registration-api.yaml.
    #[cfg(test)]
    pub const ALL: &'static [Code] = &[
        Code::Unauthorized,
        Code::UnsupportedMediaType,
        Code::BodyTooLarge,
        Code::MalformedJson,
        Code::UnknownField,
        Code::MissingField,
        Code::InvalidField,
        Code::InvalidName,
        Code::InvalidHost,
        Code::InvalidPort,
        Code::InvalidTls,
        Code::InvalidCaPem,
        Code::PasswordTooLong,
        Code::InvalidPassword,
        Code::InvalidPolicy,
        Code::InvalidLifetime,
        Code::NoEndpoint,
        Code::AlreadyExists,
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::LoginFailed,
        Code::UpstreamUnreachable,
        Code::UpstreamTls,
        Code::UpstreamTimeout,
        Code::UpstreamUnsupported,
        Code::UpstreamProtocol,
        Code::SealFailed,
        Code::StoreUnavailable,
        Code::StoreRefused,
        Code::Busy,
        Code::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthorized => "unauthorized",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::BodyTooLarge => "body_too_large",
            Code::MalformedJson => "malformed_json",
            Code::UnknownField => "unknown_field",
            Code::MissingField => "missing_field",
            Code::InvalidField => "invalid_field",
            Code::InvalidName => "invalid_name",
            Code::InvalidHost => "invalid_host",
            Code::InvalidPort => "invalid_port",
            Code::InvalidTls => "invalid_tls",
            Code::InvalidCaPem => "invalid_ca_pem",
            Code::PasswordTooLong => "password_too_long",
            Code::InvalidPassword => "invalid_password",
            Code::InvalidPolicy => "invalid_policy",
            Code::InvalidLifetime => "invalid_lifetime",
            Code::NoEndpoint => "no_endpoint",
            Code::AlreadyExists => "already_exists",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::LoginFailed => "login_failed",
            Code::UpstreamUnreachable => "upstream_unreachable",
            Code::UpstreamTls => "upstream_tls",
            Code::UpstreamTimeout => "upstream_timeout",
            Code::UpstreamUnsupported => "upstream_unsupported",
            Code::UpstreamProtocol => "upstream_protocol",
            Code::SealFailed => "seal_failed",
            Code::StoreUnavailable => "store_unavailable",
            Code::StoreRefused => "store_refused",
            Code::Busy => "busy",
            Code::Timeout => "timeout",
        }
    }

    /// The HTTP status every error of this code is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::MalformedJson
            | Code::UnknownField
            | Code::MissingField
            | Code::InvalidField
            | Code::InvalidName
            | Code::InvalidHost
            | Code::InvalidPort
            | Code::InvalidTls
            | Code::InvalidCaPem
            | Code::PasswordTooLong
            | Code::InvalidPassword
            | Code::InvalidPolicy
            | Code::InvalidLifetime
            | Code::NoEndpoint => StatusCode::BAD_REQUEST,
            Code::AlreadyExists => StatusCode::CONFLICT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::LoginFailed => StatusCode::UNPROCESSABLE_ENTITY,
            Code::UpstreamUnreachable
            | Code::UpstreamTls
            | Code::UpstreamTimeout
            | Code::UpstreamUnsupported
            | Code::UpstreamProtocol
            | Code::SealFailed
            | Code::StoreRefused => StatusCode::BAD_GATEWAY,
            Code::StoreUnavailable | Code::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Code::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// One error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    /// JSON path of the offending field (`smtp.port`, `policy.smtp.allowedSenders[2]`).
    pub field: Option<String>,
    pub message: String,
    pub fix: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            code,
            field: None,
            message: message.into(),
            fix: fix.into(),
        }
    }

    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The error with every occurrence of `secret` cut out of its texts: a second line of
    /// defence behind the login check's scrubbing of the server's reason.
    pub fn without(mut self, secret: &str) -> Self {
        if !secret.is_empty() {
            self.message = self.message.replace(secret, "[redacted]");
            self.fix = self.fix.replace(secret, "[redacted]");
        }
        self
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "code": self.code.as_str(),
            "field": self.field,
            "message": self.message,
            "fix": self.fix,
        }})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_errors_are_4xx_or_5xx() {
        let names: std::collections::BTreeSet<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), Code::ALL.len());
        for c in Code::ALL {
            assert!(
                c.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
            assert!(c.status().is_client_error() || c.status().is_server_error());
        }
        let e = ApiError::new(Code::InvalidPort, "m", "f").at("smtp.port");
        assert_eq!(e.body()["error"]["field"], "smtp.port");
        assert_eq!(e.body()["error"]["code"], "invalid_port");
    }
}
