//! The sealed payload of an OAuth credential: [`GrantSecret`] as a small JSON object inside
//! envelope version 2 (docs/envelope.md). Which fields it must hold follows from the grant and
//! the client authentication in `spec.oauth`; anything else is refused, so nothing is sealed
//! that is never used. Buffers are zeroized; no message quotes a secret.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Error;
use crate::crd::{ClientAuthMethod, OAuthGrantKind, OAuthSpec};
use crate::upstream_auth::GrantSecret;

/// Longest refresh token or client secret accepted (Microsoft refresh tokens run to ~2 KiB).
pub const MAX_GRANT_TEXT_BYTES: usize = 4096;
/// Longest private key PEM (an RSA-4096 PKCS#8 key is about 3.3 KiB).
pub const MAX_PRIVATE_KEY_PEM_BYTES: usize = 6144;
/// Longest JSON payload; keeps the ciphertext inside the CRD's 16384-character bound.
pub const MAX_GRANT_JSON_BYTES: usize = 12_000;

/// Which secret fields a grant needs, from the grant kind and the effective client auth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantFields {
    pub refresh_token: bool,
    pub client_secret: bool,
    pub private_key_pem: bool,
}

impl GrantFields {
    pub fn for_spec(oauth: &OAuthSpec) -> Self {
        let auth = oauth.effective_client_auth();
        let secret = matches!(
            auth,
            ClientAuthMethod::ClientSecretPost | ClientAuthMethod::ClientSecretBasic
        );
        match oauth.grant {
            OAuthGrantKind::RefreshToken => Self {
                refresh_token: true,
                client_secret: secret,
                private_key_pem: auth == ClientAuthMethod::PrivateKeyJwt,
            },
            OAuthGrantKind::ClientCredentials => Self {
                refresh_token: false,
                client_secret: secret,
                private_key_pem: auth == ClientAuthMethod::PrivateKeyJwt,
            },
            // The JWT-bearer grant signs its assertion with the key; there is no other secret.
            OAuthGrantKind::ServiceAccount => Self {
                refresh_token: false,
                client_secret: false,
                private_key_pem: true,
            },
        }
    }
}

/// Checks that `secret` holds exactly the fields `oauth` needs, each well-formed (the private
/// key must be an RSA PKCS#8 PEM that aws-lc-rs accepts for RS256).
pub fn validate(oauth: &OAuthSpec, secret: &GrantSecret) -> Result<(), Error> {
    let need = GrantFields::for_spec(oauth);
    let context = format!(
        "grant {} with clientAuth {}",
        oauth.grant.as_str(),
        oauth.effective_client_auth().as_str()
    );
    check_text(
        "refresh token",
        "--refresh-token-stdin or `kubectl mailcred authorize`",
        need.refresh_token,
        secret.refresh_token.as_ref(),
        &context,
    )?;
    check_text(
        "client secret",
        "--client-secret-stdin or --client-secret-file",
        need.client_secret,
        secret.client_secret.as_ref(),
        &context,
    )?;
    match (need.private_key_pem, secret.private_key_pem.as_ref()) {
        (true, None) => {
            return Err(invalid(format!(
                "{context} needs a private key; give it with --private-key-file or --service-account-key-file"
            )));
        }
        (false, Some(_)) => {
            return Err(invalid(format!(
                "{context} does not use a private key; leave it out (or use clientAuth privateKeyJwt)"
            )));
        }
        (true, Some(pem)) => check_private_key(pem.expose_secret())?,
        (false, None) => {}
    }
    Ok(())
}

fn check_text(
    what: &str,
    how: &str,
    needed: bool,
    value: Option<&SecretString>,
    context: &str,
) -> Result<(), Error> {
    let Some(value) = value else {
        return if needed {
            Err(invalid(format!(
                "{context} needs a {what}; give it with {how}"
            )))
        } else {
            Ok(())
        };
    };
    if !needed {
        return Err(invalid(format!(
            "{context} does not use a {what}; leave it out, or change spec.oauth.grant / clientAuth"
        )));
    }
    let text = value.expose_secret();
    if text.is_empty() || text.len() > MAX_GRANT_TEXT_BYTES {
        return Err(invalid(format!(
            "the {what} is {} bytes; expected 1 to {MAX_GRANT_TEXT_BYTES}",
            text.len()
        )));
    }
    // Both travel in a form body or an Authorization header: printable ASCII only.
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(format!(
            "the {what} contains spaces, control characters or non-ASCII bytes; check how it was read (a trailing newline is stripped, others are not)"
        )));
    }
    Ok(())
}

/// The key must parse as PKCS#8 RSA with aws-lc-rs, the library that signs the assertions.
pub fn check_private_key(pem: &str) -> Result<(), Error> {
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject;
    if pem.len() > MAX_PRIVATE_KEY_PEM_BYTES {
        return Err(invalid(format!(
            "the private key PEM is {} bytes, over {MAX_PRIVATE_KEY_PEM_BYTES} (RSA 2048 to 4096 bits fit)",
            pem.len()
        )));
    }
    if pem.contains("BEGIN RSA PRIVATE KEY") || pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        return Err(invalid(
            "the private key is PKCS#1 or encrypted; convert it with `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-pkcs8.pem`".into(),
        ));
    }
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
        invalid("the private key is not a PEM `BEGIN PRIVATE KEY` (PKCS#8) block; export the key as unencrypted PKCS#8".into())
    })?;
    aws_lc_rs::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|_| {
        invalid("the private key is not an RSA key of 2048 to 8192 bits (RS256 needs RSA); create an RSA key for the app registration or service account".into())
    })?;
    Ok(())
}

fn invalid(message: String) -> Error {
    Error::InvalidGrantSecret(message)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private_key_pem: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireIn {
    refresh_token: Option<String>,
    client_secret: Option<String>,
    private_key_pem: Option<String>,
}

/// `secret` as JSON, in a buffer that is zeroized when dropped.
pub fn to_json(secret: &GrantSecret) -> Result<Zeroizing<Vec<u8>>, Error> {
    let fields = [
        secret.refresh_token.as_ref(),
        secret.client_secret.as_ref(),
        secret.private_key_pem.as_ref(),
    ];
    let raw: usize = fields
        .iter()
        .flatten()
        .map(|s| s.expose_secret().len())
        .sum();
    // Escaping at most doubles what validation admits (PEM newlines); reserving that up front
    // means the buffer never reallocates and leaves no unzeroized copy behind.
    let mut out = Zeroizing::new(Vec::with_capacity(2 * raw + 128));
    let wire = WireOut {
        refresh_token: secret.refresh_token.as_ref().map(|s| s.expose_secret()),
        client_secret: secret.client_secret.as_ref().map(|s| s.expose_secret()),
        private_key_pem: secret.private_key_pem.as_ref().map(|s| s.expose_secret()),
    };
    serde_json::to_writer(&mut *out, &wire)
        .map_err(|_| Error::Crypto("the grant secret could not be encoded"))?;
    if out.len() > MAX_GRANT_JSON_BYTES {
        return Err(invalid(format!(
            "the grant secret is {} bytes encoded, over {MAX_GRANT_JSON_BYTES}",
            out.len()
        )));
    }
    Ok(out)
}

/// Parses a decrypted payload. Errors never quote the JSON (it is the secret).
pub fn from_json(bytes: &[u8]) -> Result<GrantSecret, Error> {
    if bytes.len() > MAX_GRANT_JSON_BYTES {
        return Err(malformed("is too large"));
    }
    let wire: WireIn = serde_json::from_slice(bytes)
        .map_err(|_| malformed("is not the JSON grant object mailcred seals"))?;
    let take = |s: Option<String>| {
        s.map(|s| {
            let s = Zeroizing::new(s);
            SecretString::from(s.as_str())
        })
    };
    Ok(GrantSecret {
        refresh_token: take(wire.refresh_token),
        client_secret: take(wire.client_secret),
        private_key_pem: take(wire.private_key_pem),
    })
}

fn malformed(reason: &str) -> Error {
    Error::Malformed {
        field: "ciphertext",
        reason: format!("the decrypted grant payload {reason} (was it sealed by a mailcred tool?)"),
    }
}
