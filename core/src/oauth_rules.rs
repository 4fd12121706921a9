//! What `spec.oauth` must satisfy beyond its schema, checked the same way by the operator
//! (conditions, Events), `kubectl mailcred seal` (before any secret is read) and the sidecar.
//! Each problem names the field and the fix; none involves a secret.

use crate::crd::{ClientAuthMethod, OAuthGrantKind, OAuthProvider, OAuthSpec};
use crate::upstream_auth::SaslMechanism;

/// One thing to fix in `spec.oauth`. `reason` is a CamelCase condition reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthProblem {
    pub reason: &'static str,
    pub message: String,
}

fn problem(reason: &'static str, message: impl Into<String>) -> OAuthProblem {
    OAuthProblem {
        reason,
        message: message.into(),
    }
}

/// Every problem of `oauth`, in field order. Empty means the sidecar can use it.
pub fn check(oauth: &OAuthSpec) -> Vec<OAuthProblem> {
    let mut out = Vec::new();
    check_preset(oauth, &mut out);
    check_endpoint(oauth, &mut out);
    check_grant(oauth, &mut out);
    check_scopes(oauth, &mut out);
    #[cfg(feature = "tls")]
    if let Some(pem) = &oauth.ca_pem
        && let Err(e) = crate::tls::ca_certificates(pem)
    {
        out.push(problem("InvalidCaPem", format!("spec.oauth.{e}")));
    }
    out
}

fn check_preset(oauth: &OAuthSpec, out: &mut Vec<OAuthProblem>) {
    match oauth.provider {
        OAuthProvider::Microsoft => match oauth.tenant.as_deref() {
            None => out.push(problem(
                "OAuthTenantMissing",
                "spec.oauth.tenant is required with provider microsoft: set the Entra tenant id (a GUID) or its domain, e.g. contoso.onmicrosoft.com",
            )),
            // The tenant becomes a path segment of the token endpoint URL.
            Some(t) if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') => {
                out.push(problem(
                    "OAuthInvalidTenant",
                    format!("spec.oauth.tenant {t:?} is not a tenant id or domain (letters, digits, '.', '-'); copy the Directory (tenant) ID from the app registration's overview"),
                ));
            }
            Some(_) => {}
        },
        OAuthProvider::Generic if oauth.token_endpoint.is_none() => out.push(problem(
            "OAuthTokenEndpointMissing",
            "spec.oauth.tokenEndpoint is required with provider generic: set the https:// URL of the server's token endpoint (token_endpoint in its /.well-known/openid-configuration)",
        )),
        OAuthProvider::Google | OAuthProvider::Generic => {}
    }
    if oauth.provider == OAuthProvider::Microsoft && oauth.mechanism == SaslMechanism::Oauthbearer {
        out.push(problem(
            "OAuthMechanismUnsupported",
            "spec.oauth.mechanism OAUTHBEARER: Exchange Online accepts only XOAUTH2; remove mechanism or set XOAUTH2",
        ));
    }
}

fn check_endpoint(oauth: &OAuthSpec, out: &mut Vec<OAuthProblem>) {
    let has_reason = oauth
        .insecure_reason
        .as_deref()
        .is_some_and(|r| !r.trim().is_empty());
    if oauth.insecure && !has_reason {
        out.push(problem(
            "InsecureWithoutReason",
            "spec.oauth.insecure is true but spec.oauth.insecureReason is empty; say why a plaintext token endpoint is acceptable, or turn insecure off",
        ));
    }
    let Ok(text) = oauth.token_endpoint_url() else {
        return; // reported by check_preset
    };
    let url = match url::Url::parse(&text) {
        Ok(u) => u,
        Err(e) => {
            out.push(problem(
                "OAuthInvalidTokenEndpoint",
                format!("spec.oauth.tokenEndpoint {text:?} is not a URL ({e}); write it as https://host/path"),
            ));
            return;
        }
    };
    let field = "spec.oauth.tokenEndpoint";
    match url.scheme() {
        "https" if oauth.insecure => out.push(problem(
            "InsecureWithTls",
            "spec.oauth.insecure is true but the token endpoint is https://: insecure only permits http:// and never disables certificate checks; remove insecure",
        )),
        "https" => {}
        "http" if oauth.insecure => {}
        "http" => out.push(problem(
            "InsecureNotAllowed",
            format!("{field} is http:// (the grant secret would travel in plaintext); use https://, or set insecure: true with an insecureReason (tests only)"),
        )),
        other => out.push(problem(
            "OAuthInvalidTokenEndpoint",
            format!("{field} has scheme {other:?}; a token endpoint is an https:// URL"),
        )),
    }
    if url.host_str().is_none_or(str::is_empty) {
        out.push(problem(
            "OAuthInvalidTokenEndpoint",
            format!("{field} has no host; write it as https://host/path"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        out.push(problem(
            "OAuthInvalidTokenEndpoint",
            format!("{field} contains user:password@; client credentials belong in the sealed secret, never in the URL — remove them and re-seal"),
        ));
    }
    if url.fragment().is_some() {
        out.push(problem(
            "OAuthInvalidTokenEndpoint",
            format!("{field} has a #fragment, which HTTP never sends; remove it"),
        ));
    }
}

fn check_grant(oauth: &OAuthSpec, out: &mut Vec<OAuthProblem>) {
    let auth = oauth.effective_client_auth();
    match oauth.grant {
        OAuthGrantKind::ServiceAccount => {
            if oauth.provider == OAuthProvider::Microsoft {
                out.push(problem(
                    "OAuthGrantUnsupported",
                    "spec.oauth.grant serviceAccount (JWT bearer with domain-wide delegation) is Google's; for Microsoft 365 use clientCredentials with clientAuth privateKeyJwt or clientSecretPost",
                ));
            }
            if auth != ClientAuthMethod::PrivateKeyJwt {
                out.push(problem(
                    "OAuthClientAuthMismatch",
                    format!("spec.oauth.clientAuth {} does not fit grant serviceAccount, which signs with the service account's key; remove clientAuth", auth.as_str()),
                ));
            }
        }
        OAuthGrantKind::ClientCredentials => {
            if auth == ClientAuthMethod::None {
                out.push(problem(
                    "OAuthClientAuthMismatch",
                    "spec.oauth.clientAuth none does not fit grant clientCredentials: the application must prove its identity; use clientSecretPost, clientSecretBasic or privateKeyJwt",
                ));
            }
            if oauth.provider == OAuthProvider::Google {
                out.push(problem(
                    "OAuthGrantUnsupported",
                    "spec.oauth.grant clientCredentials: Google has no client-credentials grant for Gmail; use serviceAccount (domain-wide delegation) or refreshToken",
                ));
            }
        }
        OAuthGrantKind::RefreshToken => {}
    }
    if auth == ClientAuthMethod::PrivateKeyJwt
        && oauth.provider == OAuthProvider::Microsoft
        && oauth.key_id.is_none()
        && oauth.certificate_thumbprint.is_none()
    {
        out.push(problem(
            "OAuthKeyIdMissing",
            "spec.oauth.clientAuth privateKeyJwt with provider microsoft needs certificateThumbprint (the x5t of the certificate uploaded to the app registration) or keyId",
        ));
    }
    if let Some(t) = &oauth.certificate_thumbprint
        && !(t.len() == 27
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        let hint = if t.len() == 40 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            "it looks like the portal's hex thumbprint; convert it with `echo HEX | xxd -r -p | base64 | tr '+/' '-_' | tr -d '='`"
        } else {
            "expected the base64url SHA-1 thumbprint, 27 characters"
        };
        out.push(problem(
            "OAuthInvalidThumbprint",
            format!("spec.oauth.certificateThumbprint: {hint}"),
        ));
    }
}

fn check_scopes(oauth: &OAuthSpec, out: &mut Vec<OAuthProblem>) {
    if oauth.effective_scopes().is_empty() {
        out.push(problem(
            "OAuthScopesMissing",
            "spec.oauth.scopes is empty and provider generic has no default; list the scopes the mail server needs (e.g. the one your IMAP/SMTP server checks)",
        ));
    }
    for (i, s) in oauth.scopes.iter().enumerate() {
        // RFC 6749 §3.3 scope-token: printable ASCII except space, '"' and '\'.
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            out.push(problem(
                "OAuthInvalidScope",
                format!("spec.oauth.scopes[{i}] {s:?} is not a scope token (no spaces, quotes or backslashes); give each scope as its own list item"),
            ));
        }
    }
}

/// True when a grant must not be shared by several pods: a refresh token that the server may
/// rotate (the first pod to refresh invalidates the others', and reuse can revoke the grant).
pub fn single_replica_only(oauth: &OAuthSpec) -> bool {
    oauth.grant == OAuthGrantKind::RefreshToken
}

/// The warning for [`single_replica_only`] grants (status condition, docs, sidecar log).
pub const SINGLE_REPLICA_MESSAGE: &str = "grant refreshToken: a server that rotates refresh tokens invalidates the copies in other pods, and some revoke the whole grant when an old one is reused; run this credential in one replica, or use clientCredentials for multi-replica workloads";
