//! Requests to the authorization server with the client's authentication (the sealed client
//! secret or key, if the client has one), over `mailcred_oauth`'s bounded, verified-TLS POST.

use mailcred_core::crd::OAuthSpec;
use mailcred_core::{GrantSecret, TokenError};
use mailcred_oauth::grant::Grant;
use mailcred_oauth::http::{self, Endpoint, HttpLimits, Reply};
use mailcred_oauth::reply;
use secrecy::SecretString;

pub struct Client {
    grant: Grant,
    pub token: Endpoint,
    limits: HttpLimits,
}

/// What a token request ended with, for the polling loop.
pub enum Outcome {
    RefreshToken(SecretString),
    /// An RFC 6749 §5.2 / RFC 8628 §3.5 error code (sanitized, bounded).
    Refused(String),
}

impl Client {
    pub fn new(spec: &OAuthSpec, secret: &GrantSecret, token: Endpoint) -> anyhow::Result<Self> {
        Ok(Self {
            grant: Grant::client_only(spec, token.url.clone(), secret)?,
            token,
            limits: HttpLimits::default(),
        })
    }

    pub fn scope(&self) -> String {
        self.grant.scope()
    }

    /// One POST of `fields` plus client authentication.
    pub async fn post(
        &self,
        endpoint: &Endpoint,
        fields: &[(&str, &str)],
    ) -> Result<Reply, TokenError> {
        let (form, authorization) = self.grant.form(fields)?;
        http::post_form(endpoint, self.limits, form, authorization).await
    }

    /// A token request; the access token is dropped unused (zeroized), the refresh token kept.
    pub async fn exchange(&self, fields: &[(&str, &str)]) -> anyhow::Result<Outcome> {
        let reply = self.post(&self.token, fields).await?;
        match reply::parse(&self.token.url, &reply) {
            Ok(issued) => match issued.refresh_token {
                Some(token) => Ok(Outcome::RefreshToken(token)),
                None => anyhow::bail!(
                    "the token endpoint {} issued no refresh token: request the scope that grants one (offline_access for Microsoft and most OpenID servers; Google's code flow adds access_type=offline itself)",
                    self.token.url
                ),
            },
            Err(TokenError::Refused { code, .. }) => Ok(Outcome::Refused(code)),
            Err(e) => Err(e.into()),
        }
    }
}

/// The explanation of a refusal the person can act on.
pub fn refusal(code: &str) -> anyhow::Error {
    match code {
        "access_denied" => anyhow::anyhow!(
            "the sign-in was denied (access_denied): nothing was sealed; run authorize again and allow the request"
        ),
        "expired_token" => anyhow::anyhow!(
            "the code expired before the sign-in finished (expired_token): run authorize again"
        ),
        "invalid_client" | "unauthorized_client" => anyhow::anyhow!(
            "the authorization server refused the client ({code}): check --client-id, --client-auth and that the application may use this flow"
        ),
        "invalid_scope" => anyhow::anyhow!(
            "the authorization server refused the scopes (invalid_scope): check --scope"
        ),
        other => anyhow::anyhow!("the authorization server refused the grant: {other}"),
    }
}
