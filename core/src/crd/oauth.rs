//! `spec.oauth`: the credential authenticates upstream with OAuth 2.0 access tokens instead of
//! a password. Every field here decides where the sealed grant secret (refresh token, client
//! secret or private key) is sent, so all of them are bound into the envelope (version 2,
//! docs/envelope.md): editing any one makes the sealed secret undecryptable.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::upstream_auth::SaslMechanism;

/// How access tokens are obtained. Non-secret: the secret half is the sealed secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.provider != 'microsoft' || has(self.tenant)").message("provider: microsoft needs tenant (the Entra tenant id or domain, e.g. contoso.onmicrosoft.com)"))]
#[x_kube(validation = Rule::new("self.provider != 'generic' || has(self.tokenEndpoint)").message("provider: generic needs tokenEndpoint (the https:// URL of the OAuth 2.0 token endpoint)"))]
#[x_kube(validation = Rule::new("!has(self.tokenEndpoint) || self.tokenEndpoint.startsWith('https://') || (has(self.insecure) && self.insecure)").message("tokenEndpoint must be an https:// URL; http:// needs insecure: true and an insecureReason (tests only)"))]
#[x_kube(validation = Rule::new("!has(self.insecure) || !self.insecure || (has(self.insecureReason) && size(self.insecureReason) > 0)").message("insecure: true requires a non-empty insecureReason"))]
#[serde(rename_all = "camelCase")]
pub struct OAuthSpec {
    /// `microsoft` (Entra ID v2.0 endpoint of `tenant`), `google`, or `generic` (any OAuth 2.0
    /// server; `tokenEndpoint` required).
    pub provider: OAuthProvider,
    /// Entra tenant id or domain (provider `microsoft`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tenant: Option<String>,
    /// Token endpoint URL. Presets derive it; set it only for `generic` or a sovereign cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub token_endpoint: Option<String>,
    /// The OAuth client (application) id.
    #[schemars(length(min = 1, max = 512))]
    pub client_id: String,
    /// The grant the sealed secret belongs to.
    pub grant: OAuthGrantKind,
    /// How the client authenticates to the token endpoint. Default: `clientSecretPost` for
    /// `clientCredentials`, `none` for `refreshToken`, `privateKeyJwt`'s JWT-bearer form for
    /// `serviceAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthMethod>,
    /// Scopes requested. Empty means the preset's (`https://outlook.office365.com/.default`,
    /// `https://mail.google.com/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub scopes: Vec<String>,
    /// SASL mechanism that carries the token upstream.
    #[serde(default)]
    pub mechanism: SaslMechanism,
    /// The mailbox a `serviceAccount` grant acts for (JWT `sub`); defaults to `spec.username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 320))]
    pub subject: Option<String>,
    /// Key id of the signing key for `privateKeyJwt` / `serviceAccount` (JWT header `kid`;
    /// Google's `private_key_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub key_id: Option<String>,
    /// base64url SHA-1 thumbprint of the certificate for Microsoft certificate credentials
    /// (JWT header `x5t`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub certificate_thumbprint: Option<String>,
    /// PEM CA bundle to trust for the token endpoint instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_pem: Option<String>,
    /// Allows an `http://` token endpoint. For tests only; reported in status.
    #[serde(default)]
    pub insecure: bool,
    /// Why plaintext is acceptable; required with `insecure: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub insecure_reason: Option<String>,
}

/// Authorization-server presets.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum OAuthProvider {
    Microsoft,
    Google,
    Generic,
}

impl OAuthProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthProvider::Microsoft => "microsoft",
            OAuthProvider::Google => "google",
            OAuthProvider::Generic => "generic",
        }
    }
}

/// Which OAuth 2.0 grant the sealed secret is for.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum OAuthGrantKind {
    /// Delegated: a refresh token a user consented to (`kubectl mailcred authorize`).
    RefreshToken,
    /// The application's own identity (Microsoft `SMTP.SendAsApp` / `IMAP.AccessAsApp`).
    ClientCredentials,
    /// Google JWT-bearer grant with domain-wide delegation; the sealed secret is the service
    /// account's private key.
    ServiceAccount,
}

impl OAuthGrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthGrantKind::RefreshToken => "refreshToken",
            OAuthGrantKind::ClientCredentials => "clientCredentials",
            OAuthGrantKind::ServiceAccount => "serviceAccount",
        }
    }
}

/// Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum ClientAuthMethod {
    /// A public client: no client secret.
    None,
    ClientSecretPost,
    ClientSecretBasic,
    /// RFC 7523 client assertion signed with the sealed private key (RS256).
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::None => "none",
            ClientAuthMethod::ClientSecretPost => "clientSecretPost",
            ClientAuthMethod::ClientSecretBasic => "clientSecretBasic",
            ClientAuthMethod::PrivateKeyJwt => "privateKeyJwt",
        }
    }
}

/// Microsoft's scope for Exchange Online SMTP and IMAP with the client-credentials grant.
pub const MICROSOFT_APP_SCOPE: &str = "https://outlook.office365.com/.default";
/// Google's full-mail scope (the only one that allows SMTP/IMAP).
pub const GOOGLE_MAIL_SCOPE: &str = "https://mail.google.com/";
/// Google's token endpoint (also the JWT `aud` of the service-account grant).
pub const GOOGLE_TOKEN_ENDPOINT: &str = "https://oauth2.googleapis.com/token";

impl OAuthSpec {
    /// The token endpoint the grant secret is sent to: the explicit one, else the preset's.
    /// This resolved URL is what the envelope binds.
    pub fn token_endpoint_url(&self) -> Result<String, crate::Error> {
        if let Some(url) = &self.token_endpoint {
            return Ok(url.clone());
        }
        match self.provider {
            OAuthProvider::Microsoft => {
                let tenant = self.tenant.as_deref().ok_or_else(|| {
                    crate::Error::InvalidSpec(
                        "spec.oauth.tenant is required with provider microsoft (the Entra tenant id or domain)".into(),
                    )
                })?;
                Ok(format!(
                    "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
                ))
            }
            OAuthProvider::Google => Ok(GOOGLE_TOKEN_ENDPOINT.to_string()),
            OAuthProvider::Generic => Err(crate::Error::InvalidSpec(
                "spec.oauth.tokenEndpoint is required with provider generic".into(),
            )),
        }
    }

    /// The scopes requested: the explicit ones, else the preset's.
    pub fn effective_scopes(&self) -> Vec<String> {
        if !self.scopes.is_empty() {
            return self.scopes.clone();
        }
        match self.provider {
            OAuthProvider::Microsoft => vec![MICROSOFT_APP_SCOPE.to_string()],
            OAuthProvider::Google => vec![GOOGLE_MAIL_SCOPE.to_string()],
            OAuthProvider::Generic => Vec::new(),
        }
    }

    /// The client authentication used: the explicit one, else the grant's default.
    pub fn effective_client_auth(&self) -> ClientAuthMethod {
        self.client_auth.unwrap_or(match self.grant {
            OAuthGrantKind::ClientCredentials => ClientAuthMethod::ClientSecretPost,
            OAuthGrantKind::RefreshToken => ClientAuthMethod::None,
            OAuthGrantKind::ServiceAccount => ClientAuthMethod::PrivateKeyJwt,
        })
    }
}
