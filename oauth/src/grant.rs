//! The token request of each grant (RFC 6749 §4.4, §6; RFC 7523 §2.1 and §2.2) with its
//! client authentication, built from `spec.oauth` and the unsealed [`GrantSecret`].

use base64::Engine;
use mailcred_core::TokenError;
use mailcred_core::crd::{ClientAuthMethod, OAuthGrantKind, OAuthSpec};
use mailcred_core::upstream_auth::GrantSecret;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::jwt::{self, Signer};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How this client proves itself to the token endpoint.
enum ClientAuth {
    Public,
    Post(SecretString),
    Basic(SecretString),
    Jwt(Signer),
}

/// Everything needed to ask for a token; secrets stay in zeroizing types.
pub struct Grant {
    pub kind: OAuthGrantKind,
    client_id: String,
    audience: String,
    scopes: Vec<String>,
    auth: ClientAuth,
    /// The service-account grant's signer and subject.
    service_account: Option<(Signer, String)>,
}

fn missing(what: &str, grant: OAuthGrantKind) -> TokenError {
    TokenError::Config(format!(
        "the sealed grant secret has no {what}, which grant {} needs; seal it again with kubectl mailcred seal",
        grant.as_str()
    ))
}

impl Grant {
    /// Checks that the sealed secret has what the grant and client auth need. The refresh
    /// token (if any) is returned apart: the token source keeps and rotates it.
    pub fn new(
        spec: &OAuthSpec,
        audience: String,
        username: &str,
        secret: GrantSecret,
    ) -> Result<(Self, Option<SecretString>), TokenError> {
        let kind = spec.grant;
        let GrantSecret {
            refresh_token,
            client_secret,
            private_key_pem,
        } = secret;
        let signer = |pem: &SecretString| {
            Signer::from_pem(
                pem.expose_secret(),
                spec.key_id.as_deref(),
                spec.certificate_thumbprint.as_deref(),
            )
        };
        let mut service_account = None;
        let auth = if kind == OAuthGrantKind::ServiceAccount {
            let pem = private_key_pem
                .as_ref()
                .ok_or_else(|| missing("private key", kind))?;
            let subject = spec.subject.clone().unwrap_or_else(|| username.to_string());
            service_account = Some((signer(pem)?, subject));
            ClientAuth::Public
        } else {
            match spec.effective_client_auth() {
                ClientAuthMethod::None => ClientAuth::Public,
                ClientAuthMethod::ClientSecretPost => {
                    ClientAuth::Post(client_secret.ok_or_else(|| missing("client secret", kind))?)
                }
                ClientAuthMethod::ClientSecretBasic => {
                    ClientAuth::Basic(client_secret.ok_or_else(|| missing("client secret", kind))?)
                }
                ClientAuthMethod::PrivateKeyJwt => ClientAuth::Jwt(signer(
                    private_key_pem
                        .as_ref()
                        .ok_or_else(|| missing("private key", kind))?,
                )?),
            }
        };
        if kind == OAuthGrantKind::RefreshToken && refresh_token.is_none() {
            return Err(missing("refresh token", kind));
        }
        if kind == OAuthGrantKind::ClientCredentials && matches!(auth, ClientAuth::Public) {
            return Err(TokenError::Config(
                "grant clientCredentials needs client authentication (clientAuth none is for refreshToken only)".into(),
            ));
        }
        let grant = Self {
            kind,
            client_id: spec.client_id.clone(),
            audience,
            scopes: spec.effective_scopes(),
            auth,
            service_account,
        };
        Ok((grant, refresh_token))
    }

    /// Metrics label.
    pub fn label(&self) -> &'static str {
        match self.kind {
            OAuthGrantKind::RefreshToken => "refresh_token",
            OAuthGrantKind::ClientCredentials => "client_credentials",
            OAuthGrantKind::ServiceAccount => "service_account",
        }
    }

    /// The urlencoded form and the `Authorization` header value, if any.
    pub fn request(
        &self,
        refresh_token: Option<&SecretString>,
    ) -> Result<(Zeroizing<String>, Option<Zeroizing<String>>), TokenError> {
        // Sized up front so the buffer holding secrets is not reallocated while it grows.
        let mut form = Zeroizing::new(String::with_capacity(16 * 1024));
        let mut authorization = None;
        {
            let mut f = form_urlencoded::Serializer::new(&mut *form);
            let scope = self.scopes.join(" ");
            let now = jwt::now_secs();
            match (&self.kind, &self.service_account) {
                (OAuthGrantKind::ServiceAccount, Some((signer, subject))) => {
                    let assertion = jwt::google_assertion(
                        signer,
                        &self.client_id,
                        &self.scopes,
                        &self.audience,
                        subject,
                        now,
                    )?;
                    f.append_pair("grant_type", JWT_BEARER);
                    f.append_pair("assertion", &assertion);
                }
                (OAuthGrantKind::RefreshToken, _) => {
                    let token = refresh_token
                        .ok_or_else(|| missing("refresh token", OAuthGrantKind::RefreshToken))?;
                    f.append_pair("grant_type", "refresh_token");
                    f.append_pair("refresh_token", token.expose_secret());
                    if !scope.is_empty() {
                        f.append_pair("scope", &scope);
                    }
                }
                _ => {
                    f.append_pair("grant_type", "client_credentials");
                    if !scope.is_empty() {
                        f.append_pair("scope", &scope);
                    }
                }
            }
            self.append_client_auth(&mut f, now, &mut authorization)?;
            f.finish();
        }
        Ok((form, authorization))
    }

    /// Client authentication alone, for the grants `kubectl mailcred authorize` runs before
    /// any refresh token exists (RFC 8628 device code, RFC 6749 §4.1 authorization code).
    /// `audience` is the token endpoint URL (the client assertion's `aud`).
    pub fn client_only(
        spec: &OAuthSpec,
        audience: String,
        secret: &GrantSecret,
    ) -> Result<Self, TokenError> {
        let kind = spec.grant;
        let auth = match spec.effective_client_auth() {
            ClientAuthMethod::None => ClientAuth::Public,
            ClientAuthMethod::ClientSecretPost => ClientAuth::Post(
                secret
                    .client_secret
                    .clone()
                    .ok_or_else(|| missing("client secret", kind))?,
            ),
            ClientAuthMethod::ClientSecretBasic => ClientAuth::Basic(
                secret
                    .client_secret
                    .clone()
                    .ok_or_else(|| missing("client secret", kind))?,
            ),
            ClientAuthMethod::PrivateKeyJwt => ClientAuth::Jwt(Signer::from_pem(
                secret
                    .private_key_pem
                    .as_ref()
                    .ok_or_else(|| missing("private key", kind))?
                    .expose_secret(),
                spec.key_id.as_deref(),
                spec.certificate_thumbprint.as_deref(),
            )?),
        };
        Ok(Self {
            kind,
            client_id: spec.client_id.clone(),
            audience,
            scopes: spec.effective_scopes(),
            auth,
            service_account: None,
        })
    }

    /// A form of `fields` (grant type, code, verifier, ...) plus this client's
    /// authentication; same zeroizing buffers as [`Self::request`].
    pub fn form(
        &self,
        fields: &[(&str, &str)],
    ) -> Result<(Zeroizing<String>, Option<Zeroizing<String>>), TokenError> {
        let mut form = Zeroizing::new(String::with_capacity(16 * 1024));
        let mut authorization = None;
        {
            let mut f = form_urlencoded::Serializer::new(&mut *form);
            for (name, value) in fields {
                f.append_pair(name, value);
            }
            self.append_client_auth(&mut f, jwt::now_secs(), &mut authorization)?;
            f.finish();
        }
        Ok((form, authorization))
    }

    /// The scopes requested (space-separated in forms).
    pub fn scope(&self) -> String {
        self.scopes.join(" ")
    }

    fn append_client_auth(
        &self,
        f: &mut form_urlencoded::Serializer<'_, &mut String>,
        now: u64,
        authorization: &mut Option<Zeroizing<String>>,
    ) -> Result<(), TokenError> {
        match &self.auth {
            ClientAuth::Public if self.service_account.is_some() => {}
            ClientAuth::Public => {
                f.append_pair("client_id", &self.client_id);
            }
            ClientAuth::Post(secret) => {
                f.append_pair("client_id", &self.client_id);
                f.append_pair("client_secret", secret.expose_secret());
            }
            ClientAuth::Basic(secret) => {
                *authorization = Some(basic(&self.client_id, secret));
            }
            ClientAuth::Jwt(signer) => {
                let assertion =
                    jwt::client_assertion(signer, &self.client_id, &self.audience, now)?;
                f.append_pair("client_id", &self.client_id);
                f.append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE);
                f.append_pair("client_assertion", &assertion);
            }
        }
        Ok(())
    }
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
fn basic(client_id: &str, secret: &SecretString) -> Zeroizing<String> {
    let enc =
        |s: &str| Zeroizing::new(form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>());
    let pair = Zeroizing::new(format!(
        "{}:{}",
        enc(client_id).as_str(),
        enc(secret.expose_secret()).as_str()
    ));
    Zeroizing::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    ))
}
