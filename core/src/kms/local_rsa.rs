//! The RSA variant of the `local` provider: an RSA key pair in files instead of a KMS key, so
//! that the registration page (which seals to a public key in the browser) works on one
//! machine with no cloud account. Wrapping is the one KMS uses for RSAES_OAEP_SHA_256:
//! RSA-OAEP with SHA-256 and MGF1-SHA-256, no label. The private key file is what a sidecar
//! or `kubectl mailcred verify` reads with `--local-key-file`; the public key file is all a
//! sealer needs.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::error::KmsError;
use crate::secret::DataKey;

const FINGERPRINT_DOMAIN: &[u8] = b"mailcred.io/local-rsa-fingerprint\0";
pub(super) const PRIVATE_PEM_LABEL: &str = "PRIVATE KEY";

/// `sha256:` + hex of the first 16 bytes of SHA-256(domain || SubjectPublicKeyInfo DER): the
/// key id of a local RSA key, computable from either half.
pub fn local_rsa_key_id(spki_der: &[u8]) -> String {
    let mut input = FINGERPRINT_DOMAIN.to_vec();
    input.extend_from_slice(spki_der);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// PEM armour with 64-column base64 lines.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A local RSA key pair (the private half).
pub(super) struct RsaKeyPair {
    private: PrivateDecryptingKey,
    spki_der: Vec<u8>,
}

impl RsaKeyPair {
    pub(super) fn generate() -> Result<Self, KmsError> {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa3072)
            .map_err(|_| KmsError::Config("RSA key generation failed".into()))?;
        Self::from_private(private)
    }

    fn from_private(private: PrivateDecryptingKey) -> Result<Self, KmsError> {
        let spki = AsDer::<PublicKeyX509Der>::as_der(&private.public_key())
            .map_err(|_| KmsError::Config("cannot encode the RSA public key".into()))?;
        Ok(Self {
            spki_der: spki.as_ref().to_vec(),
            private,
        })
    }

    /// A PKCS#8 `PRIVATE KEY` PEM (as `openssl genpkey -algorithm RSA` writes).
    pub(super) fn from_pem(text: &str, origin: &str) -> Result<Self, KmsError> {
        let bad = || {
            KmsError::Config(format!(
                "{origin} is not a PKCS#8 RSA private key (`-----BEGIN PRIVATE KEY-----`); create one with `kubectl mailcred keygen --rsa`"
            ))
        };
        let begin = format!("-----BEGIN {PRIVATE_PEM_LABEL}-----");
        let end = format!("-----END {PRIVATE_PEM_LABEL}-----");
        let start = text.find(&begin).ok_or_else(bad)? + begin.len();
        let stop = text[start..].find(&end).ok_or_else(bad)? + start;
        let body: Zeroizing<String> = Zeroizing::new(
            text[start..stop]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect(),
        );
        let der = Zeroizing::new(STANDARD.decode(body.as_bytes()).map_err(|_| bad())?);
        let private = PrivateDecryptingKey::from_pkcs8(&der).map_err(|_| bad())?;
        if private.key_size_bits() < 2048 {
            return Err(KmsError::Config(format!(
                "{origin} holds a {}-bit RSA key; use at least 2048 bits",
                private.key_size_bits()
            )));
        }
        Self::from_private(private)
    }

    pub(super) fn private_pem(&self) -> Result<Zeroizing<String>, KmsError> {
        let der = AsDer::<Pkcs8V1Der>::as_der(&self.private)
            .map_err(|_| KmsError::Config("cannot encode the RSA private key".into()))?;
        Ok(Zeroizing::new(pem(PRIVATE_PEM_LABEL, der.as_ref())))
    }

    pub(super) fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// RSA-OAEP-SHA-256 unwrap; `None` when the wrapped key was not made for this key pair.
    pub(super) fn unwrap(&self, wrapped: &[u8]) -> Option<DataKey> {
        let oaep = OaepPrivateDecryptingKey::new(self.private.clone()).ok()?;
        let mut out = Zeroizing::new(vec![0u8; oaep.min_output_size()]);
        let plain = oaep
            .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut out, None)
            .ok()?;
        DataKey::from_slice(plain).ok()
    }
}
