//! How the sidecar proves itself to the upstream mail server: the sealed password, or OAuth 2.0
//! access tokens obtained with a sealed grant. The front-ends see only this module; how tokens
//! are fetched (HTTP, JWT assertions, caching) lives in the sidecar's token client.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Error, MailPassword};

/// What a [`crate::credential::UsableCredential`] authenticates upstream with.
pub enum UpstreamAuth {
    /// SMTP AUTH PLAIN/LOGIN, IMAP LOGIN with the sealed password.
    Password(MailPassword),
    /// SASL XOAUTH2 or OAUTHBEARER with short-lived access tokens.
    OAuth(OAuthLogin),
}

impl UpstreamAuth {
    /// The password, when this credential has one.
    pub fn password(&self) -> Option<&MailPassword> {
        match self {
            UpstreamAuth::Password(p) => Some(p),
            UpstreamAuth::OAuth(_) => None,
        }
    }

    /// A second handle to the same secret: a duplicated password, or the same token source
    /// (so every session of the credential shares one token cache).
    pub fn duplicate(&self) -> Self {
        match self {
            UpstreamAuth::Password(p) => UpstreamAuth::Password(p.duplicate()),
            UpstreamAuth::OAuth(o) => UpstreamAuth::OAuth(OAuthLogin {
                mechanism: o.mechanism,
                tokens: Arc::clone(&o.tokens),
            }),
        }
    }

    /// Low-cardinality name for audit lines and metrics.
    pub fn kind_label(&self) -> &'static str {
        match self {
            UpstreamAuth::Password(_) => "password",
            UpstreamAuth::OAuth(o) => o.mechanism.label(),
        }
    }
}

impl fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamAuth::Password(_) => f.write_str("UpstreamAuth::Password([REDACTED])"),
            UpstreamAuth::OAuth(o) => write!(f, "UpstreamAuth::OAuth({:?})", o.mechanism),
        }
    }
}

/// OAuth upstream login: the SASL mechanism and where its tokens come from.
pub struct OAuthLogin {
    pub mechanism: SaslMechanism,
    pub tokens: Arc<dyn AccessTokenSource>,
}

/// The SASL mechanism that carries an OAuth 2.0 bearer token upstream.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SaslMechanism {
    /// Google's and Microsoft's mechanism (`user=…^Aauth=Bearer …^A^A`).
    #[default]
    #[serde(rename = "XOAUTH2")]
    Xoauth2,
    /// RFC 7628 (`n,a=user,^Ahost=…^Aport=…^Aauth=Bearer …^A^A`).
    #[serde(rename = "OAUTHBEARER")]
    Oauthbearer,
}

impl SaslMechanism {
    /// The mechanism name as sent in `AUTH` / `AUTHENTICATE` and offered in EHLO / CAPABILITY.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Xoauth2 => "XOAUTH2",
            SaslMechanism::Oauthbearer => "OAUTHBEARER",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SaslMechanism::Xoauth2 => "xoauth2",
            SaslMechanism::Oauthbearer => "oauthbearer",
        }
    }

    /// The SASL initial client response, before base64, for `user` with `token` against
    /// `host:port` (OAUTHBEARER names the server; XOAUTH2 does not).
    pub fn initial_response(
        self,
        user: &str,
        host: &str,
        port: u16,
        token: &AccessToken,
    ) -> Zeroizing<String> {
        let token = token.expose();
        Zeroizing::new(match self {
            SaslMechanism::Xoauth2 => format!("user={user}\x01auth=Bearer {token}\x01\x01"),
            SaslMechanism::Oauthbearer => {
                // RFC 7628 §3.1: the authzid is a SASLname, where ',' and '=' are escaped.
                let authzid = user.replace('=', "=3D").replace(',', "=2C");
                format!(
                    "n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
                )
            }
        })
    }
}

/// An access token in memory: zeroized when the last handle goes, redacted in `Debug`.
#[derive(Clone)]
pub struct AccessToken {
    secret: Arc<SecretString>,
    /// Increases with every token the source obtains: [`AccessTokenSource::rejected`] names
    /// the token that failed, so a rejection of an old token does not discard a newer one.
    pub generation: u64,
    /// When the token endpoint said it stops being valid (`expires_in` from issue).
    pub expires_at: Instant,
}

impl AccessToken {
    pub fn new(token: SecretString, generation: u64, expires_at: Instant) -> Self {
        Self {
            secret: Arc::new(token),
            generation,
            expires_at,
        }
    }

    /// The bearer token. Callers must not log, format or persist it.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken([REDACTED], generation {})", self.generation)
    }
}

/// Supplies access tokens for one credential. Implementations cache a token until shortly
/// before it expires, refresh ahead of expiry, and let any number of concurrent callers wait
/// on one token request.
#[async_trait]
pub trait AccessTokenSource: Send + Sync {
    /// A token that is valid now. Errors are [`Error::Token`] (the token endpoint's trouble,
    /// named by its OAuth error code, never by a secret).
    async fn access_token(&self) -> Result<AccessToken, Error>;

    /// The upstream refused `token` (revoked or expired early): the next
    /// [`Self::access_token`] fetches a new one. Callers retry once, never in a loop.
    fn rejected(&self, token: &AccessToken);
}

/// The secret half of an OAuth grant, as sealed inside the envelope (a JSON object; see
/// docs/envelope.md). Which fields must be present depends on the grant and client auth.
#[derive(Default)]
pub struct GrantSecret {
    /// `refreshToken` grants.
    pub refresh_token: Option<SecretString>,
    /// `clientSecretPost` / `clientSecretBasic`.
    pub client_secret: Option<SecretString>,
    /// PKCS#8 PEM RSA key: `privateKeyJwt` and `serviceAccount`.
    pub private_key_pem: Option<SecretString>,
}

impl fmt::Debug for GrantSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantSecret")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// Builds the token source of an OAuth credential once its grant secret is unsealed. The
/// sidecar's token client implements it; core stays free of HTTP.
pub trait TokenSourceFactory: Send + Sync {
    fn token_source(
        &self,
        oauth: &crate::crd::OAuthSpec,
        username: &str,
        secret: GrantSecret,
    ) -> Result<Arc<dyn AccessTokenSource>, Error>;
}
