//! mailcred's OAuth 2.0 token client: [`OAuthClient`] is the sidecar's
//! [`TokenSourceFactory`]; each credential gets a [`TokenSource`] that fetches access tokens
//! over verified TLS (`mailcred_core::tls` only), caches one until shortly before expiry and
//! lets concurrent callers share one request.
//!
//! Never in an error, log line or `Debug`: a token, client secret, private key or assertion.

pub mod grant;
pub mod http;
pub mod jwt;
pub mod metrics;
pub mod reply;
pub mod source;

use std::sync::Arc;

use mailcred_core::crd::OAuthSpec;
use mailcred_core::upstream_auth::{AccessTokenSource, GrantSecret, TokenSourceFactory};
use mailcred_core::{Error, TokenError};

pub use http::HttpLimits;
pub use metrics::TokenMetrics;
pub use source::TokenSource;

/// Builds token sources with shared limits and metrics.
#[derive(Clone, Debug, Default)]
pub struct OAuthClient {
    pub limits: HttpLimits,
    pub metrics: TokenMetrics,
}

impl OAuthClient {
    pub fn new(limits: HttpLimits, metrics: TokenMetrics) -> Self {
        Self { limits, metrics }
    }

    /// The concrete source (tests inspect it; the factory returns it as a trait object).
    pub fn source(
        &self,
        oauth: &OAuthSpec,
        username: &str,
        secret: GrantSecret,
    ) -> Result<TokenSource, TokenError> {
        let url = oauth
            .token_endpoint_url()
            .map_err(|e| TokenError::Config(e.to_string()))?;
        let endpoint = http::Endpoint::parse(&url, oauth.ca_pem.as_deref(), oauth.insecure)?;
        let (grant, refresh_token) = grant::Grant::new(oauth, url.clone(), username, secret)?;
        Ok(TokenSource::new(
            grant,
            refresh_token,
            endpoint,
            self.limits,
            self.metrics.clone(),
            format!("{} at {url}", oauth.client_id),
        ))
    }
}

impl TokenSourceFactory for OAuthClient {
    fn token_source(
        &self,
        oauth: &OAuthSpec,
        username: &str,
        secret: GrantSecret,
    ) -> Result<Arc<dyn AccessTokenSource>, Error> {
        Ok(Arc::new(self.source(oauth, username, secret)?))
    }
}
