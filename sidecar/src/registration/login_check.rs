//! The login check before anything is sealed: SMTP AUTH and/or IMAP LOGIN against each
//! endpoint given, over verified TLS, with the front-ends' own code
//! (`mailcred_smtp::verify_login`, `mailcred_imap::verify_login`).

use std::time::Duration;

use async_trait::async_trait;
use mailcred_core::UpstreamAuth;
use mailcred_core::crd::{EndpointKind, UpstreamEndpoint};
use mailcred_core::login_check::LoginCheckError;

use super::errors::{ApiError, Code};

#[async_trait]
pub trait LoginChecker: Send + Sync {
    async fn check(
        &self,
        kind: EndpointKind,
        endpoint: &UpstreamEndpoint,
        username: &str,
        auth: &UpstreamAuth,
    ) -> Result<(), LoginCheckError>;
}

/// Logs in to the real servers, each step bounded by `timeout`.
pub struct UpstreamLoginChecker {
    pub timeout: Duration,
}

#[async_trait]
impl LoginChecker for UpstreamLoginChecker {
    async fn check(
        &self,
        kind: EndpointKind,
        endpoint: &UpstreamEndpoint,
        username: &str,
        auth: &UpstreamAuth,
    ) -> Result<(), LoginCheckError> {
        match kind {
            EndpointKind::Smtp => {
                mailcred_smtp::verify_login(endpoint, username, auth, self.timeout).await
            }
            EndpointKind::Imap => {
                mailcred_imap::verify_login(endpoint, username, auth, self.timeout).await
            }
        }
    }
}

/// The API's answer to a failed check of the `kind` endpoint.
pub fn to_api_error(kind: EndpointKind, e: LoginCheckError) -> ApiError {
    let k = kind.as_str();
    let server = format!("the {} server", k.to_uppercase());
    match e {
        LoginCheckError::Rejected { reason } => ApiError::new(
            Code::LoginFailed,
            reason,
            format!("{server} refused this username and password: check both (an app password may be needed when the account has two-factor sign-in)"),
        )
        .at("password"),
        LoginCheckError::Unreachable { detail } => ApiError::new(
            Code::UpstreamUnreachable,
            format!("{server} could not be reached: {detail}"),
            format!("check {k}.host and {k}.port, and that the sidecar may connect there"),
        )
        .at(format!("{k}.host")),
        LoginCheckError::Tls { detail } => ApiError::new(
            Code::UpstreamTls,
            format!("TLS with {server} failed: {detail}"),
            format!("check {k}.tls (implicit or starttls for this port) and, for a private CA, {k}.caPem"),
        )
        .at(format!("{k}.tls")),
        LoginCheckError::Timeout => ApiError::new(
            Code::UpstreamTimeout,
            format!("{server} did not answer in time"),
            format!("check {k}.host and {k}.port; try again later"),
        )
        .at(format!("{k}.host")),
        LoginCheckError::Unsupported { detail } => ApiError::new(
            Code::UpstreamUnsupported,
            format!("{server} offers no login the sidecar can use: {detail}"),
            "the server must offer AUTH PLAIN/LOGIN (SMTP) or AUTHENTICATE PLAIN/LOGIN (IMAP) over TLS",
        )
        .at(k),
        LoginCheckError::Protocol { detail } | LoginCheckError::Token { detail } => ApiError::new(
            Code::UpstreamProtocol,
            format!("{server} broke the protocol: {detail}"),
            format!("check that {k}.port is the {} service", k.to_uppercase()),
        )
        .at(k),
    }
}
