//! RS256 JWT assertions signed with the sealed RSA key (aws-lc-rs): the RFC 7523 client
//! assertion of `privateKeyJwt`, and Google's service-account JWT-bearer grant assertion.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use mailcred_core::TokenError;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// Client assertions live at most this long (RFC 7523 says short; Entra allows 10 min).
pub const CLIENT_ASSERTION_LIFETIME: u64 = 300;
/// Google's maximum for the service-account assertion.
pub const GOOGLE_ASSERTION_LIFETIME: u64 = 3600;

/// The signing key and the header fields that name it.
pub struct Signer {
    key: RsaKeyPair,
    kid: Option<String>,
    x5t: Option<String>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer([REDACTED], kid {:?})", self.kid)
    }
}

impl Signer {
    /// From a PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM.
    pub fn from_pem(pem: &str, kid: Option<&str>, x5t: Option<&str>) -> Result<Self, TokenError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            TokenError::Config("the sealed private key is not a PEM private key".into())
        })?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => {
                return Err(TokenError::Config(
                    "the sealed private key must be an RSA key (RS256)".into(),
                ));
            }
        }
        .map_err(|_| TokenError::Config("the sealed private key is not a usable RSA key".into()))?;
        Ok(Self {
            key,
            kid: kid.map(str::to_owned),
            x5t: x5t.map(str::to_owned),
        })
    }

    /// The DER RSAPublicKey (tests verify signatures with it).
    pub fn public_key_der(&self) -> Vec<u8> {
        use aws_lc_rs::signature::KeyPair;
        self.key.public_key().as_ref().to_vec()
    }

    /// `header.claims.signature`, base64url without padding.
    pub fn sign(&self, claims: &Value) -> Result<Zeroizing<String>, TokenError> {
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.kid {
            header["kid"] = json!(kid);
        }
        if let Some(x5t) = &self.x5t {
            header["x5t"] = json!(x5t);
        }
        let mut jwt = Zeroizing::new(String::with_capacity(2048));
        jwt.push_str(&B64.encode(header.to_string()));
        jwt.push('.');
        jwt.push_str(&B64.encode(claims.to_string()));
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                jwt.as_bytes(),
                &mut signature,
            )
            .map_err(|_| TokenError::Config("RS256 signing failed".into()))?;
        jwt.push('.');
        jwt.push_str(&B64.encode(&signature));
        Ok(jwt)
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn jti() -> Result<String, TokenError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenError::Config("no randomness for the assertion jti".into()))?;
    Ok(B64.encode(bytes))
}

/// RFC 7523 §3 / OIDC `private_key_jwt`: iss = sub = client_id, aud = the token endpoint.
pub fn client_assertion(
    signer: &Signer,
    client_id: &str,
    audience: &str,
    now: u64,
) -> Result<Zeroizing<String>, TokenError> {
    signer.sign(&json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": jti()?,
        "iat": now,
        "nbf": now,
        "exp": now + CLIENT_ASSERTION_LIFETIME,
    }))
}

/// Google's service-account grant assertion (developers.google.com/identity/protocols/oauth2/service-account):
/// iss = the service account's email, scope space-joined, aud = the token endpoint,
/// exp = iat + 3600, sub = the mailbox acted for (domain-wide delegation).
pub fn google_assertion(
    signer: &Signer,
    client_email: &str,
    scopes: &[String],
    audience: &str,
    subject: &str,
    now: u64,
) -> Result<Zeroizing<String>, TokenError> {
    signer.sign(&json!({
        "iss": client_email,
        "scope": scopes.join(" "),
        "aud": audience,
        "iat": now,
        "exp": now + GOOGLE_ASSERTION_LIFETIME,
        "sub": subject,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    fn pem() -> String {
        let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = key.as_der().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    /// Decodes and verifies `jwt` the way the server does; returns (header, claims).
    fn verify(signer: &Signer, jwt: &str) -> (Value, Value) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, signer.public_key_der())
            .verify(signed.as_bytes(), &B64.decode(parts[2]).unwrap())
            .expect("RS256 signature verifies with the public key");
        let decode = |p: &str| serde_json::from_slice::<Value>(&B64.decode(p).unwrap()).unwrap();
        (decode(parts[0]), decode(parts[1]))
    }

    #[test]
    fn google_service_account_assertion_follows_googles_rules() {
        let signer = Signer::from_pem(&pem(), Some("key-1"), None).unwrap();
        let scopes = vec!["https://mail.google.com/".to_string(), "b".to_string()];
        let jwt = google_assertion(
            &signer,
            "sa@p.iam.gserviceaccount.com",
            &scopes,
            "https://oauth2.googleapis.com/token",
            "user@example.com",
            1_000_000,
        )
        .unwrap();
        let (header, claims) = verify(&signer, &jwt);
        assert_eq!(
            header,
            json!({"alg": "RS256", "typ": "JWT", "kid": "key-1"})
        );
        assert_eq!(claims["iss"], "sa@p.iam.gserviceaccount.com");
        assert_eq!(claims["scope"], "https://mail.google.com/ b");
        assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
        assert_eq!(claims["sub"], "user@example.com");
        assert_eq!(claims["iat"], 1_000_000);
        assert_eq!(claims["exp"], 1_003_600);
    }

    #[test]
    fn client_assertion_follows_rfc7523() {
        let signer = Signer::from_pem(&pem(), Some("k"), Some("thumb")).unwrap();
        let a = client_assertion(&signer, "app", "https://idp/token", 50).unwrap();
        let b = client_assertion(&signer, "app", "https://idp/token", 50).unwrap();
        let (header, claims) = verify(&signer, &a);
        assert_eq!(header["x5t"], "thumb");
        assert_eq!(header["kid"], "k");
        assert_eq!(claims["iss"], "app");
        assert_eq!(claims["sub"], "app");
        assert_eq!(claims["aud"], "https://idp/token");
        assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 300);
        assert_ne!(verify(&signer, &b).1["jti"], claims["jti"], "jti is random");
    }

    #[test]
    fn bad_keys_are_config_errors_without_the_key() {
        let err = Signer::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            None,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, TokenError::Config(_)));
        assert!(!err.to_string().contains("AAAA"));
    }
}
