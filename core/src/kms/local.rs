//! The `local` provider: a 32-byte key-encryption key in a file, for development, demos and
//! single-machine use. It stands in for KMS, including the context binding: the wrapped data
//! key carries the encryption context as associated data. The key file may instead hold an
//! RSA private key (`keygen --rsa`, [`super::local_rsa`]): the stand-in for an asymmetric KMS
//! key, to which the registration page seals in the browser.

use std::fmt;
use std::io::Write;
use std::path::Path;

use async_trait::async_trait;
use aws_lc_rs::aead::NONCE_LEN;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

use super::local_rsa::{PRIVATE_PEM_LABEL, RsaKeyPair, local_rsa_key_id};
use super::{DataKeySealer, GeneratedDataKey, KmsProvider, RsaPublicKeySealer};
use crate::aead;
use crate::binding::EncryptionContext;
use crate::crd::{DataKeyWrapping, KmsKeyRef, KmsProviderKind};
use crate::error::KmsError;
use crate::secret::DataKey;

const WRAP_AAD_MAGIC: &[u8] = b"mailcred.io/local-kek\0";
const FINGERPRINT_DOMAIN: &[u8] = b"mailcred.io/local-kek-fingerprint\0";
const FILE_HEADER: &str = "# mailcred local key-encryption key. Anyone holding this file can unseal every\n# credential sealed to it: keep it out of git, images and ConfigMaps.\n";

/// A local key-encryption key.
pub struct LocalKms {
    key: LocalKey,
    fingerprint: String,
}

enum LocalKey {
    Symmetric(SecretBox<[u8; 32]>),
    Rsa(Box<RsaKeyPair>),
}

impl LocalKms {
    /// A new random key (see [`LocalKms::write_new_key_file`]).
    pub fn generate() -> Result<Self, KmsError> {
        let key = DataKey::generate().map_err(|e| KmsError::Config(e.to_string()))?;
        Ok(Self::from_key(key.expose()))
    }

    fn from_key(kek: &[u8; 32]) -> Self {
        let mut input = Zeroizing::new(FINGERPRINT_DOMAIN.to_vec());
        input.extend_from_slice(kek);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        let hex: String = digest.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            key: LocalKey::Symmetric(SecretBox::new(Box::new(*kek))),
            fingerprint: format!("sha256:{hex}"),
        }
    }

    /// A new random RSA-3072 key pair (the RSA variant, see the module docs).
    pub fn generate_rsa() -> Result<Self, KmsError> {
        Ok(Self::from_rsa(RsaKeyPair::generate()?))
    }

    fn from_rsa(pair: RsaKeyPair) -> Self {
        Self {
            fingerprint: local_rsa_key_id(pair.spki_der()),
            key: LocalKey::Rsa(Box::new(pair)),
        }
    }

    /// The public half of an RSA key, as PEM `PUBLIC KEY` (what the registration page gets);
    /// `None` for a symmetric key.
    pub fn public_key_pem(&self) -> Option<String> {
        match &self.key {
            LocalKey::Rsa(pair) => Some(super::local_rsa::pem("PUBLIC KEY", pair.spki_der())),
            LocalKey::Symmetric(_) => None,
        }
    }

    /// How this key wraps data keys.
    pub fn wrapping(&self) -> DataKeyWrapping {
        match &self.key {
            LocalKey::Rsa(_) => DataKeyWrapping::RsaesOaepSha256,
            LocalKey::Symmetric(_) => DataKeyWrapping::SymmetricDefault,
        }
    }

    /// Reads a key file written by `kubectl mailcred keygen` (comment lines, one base64 line).
    pub fn from_file(path: &Path) -> Result<Self, KmsError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            KmsError::Config(format!(
                "cannot read local key file {}: {e}",
                path.display()
            ))
        })?);
        if text.contains(&format!("-----BEGIN {PRIVATE_PEM_LABEL}-----")) {
            let origin = format!("local key file {}", path.display());
            return Ok(Self::from_rsa(RsaKeyPair::from_pem(&text, &origin)?));
        }
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| {
                KmsError::Config(format!(
                    "local key file {} holds no key; create one with `kubectl mailcred keygen`",
                    path.display()
                ))
            })?;
        let bytes = Zeroizing::new(STANDARD.decode(line).map_err(|_| {
            KmsError::Config(format!(
                "local key file {} is not base64; create one with `kubectl mailcred keygen`",
                path.display()
            ))
        })?);
        let key: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            KmsError::Config(format!(
                "local key file {} holds {} bytes, a key has 32",
                path.display(),
                bytes.len()
            ))
        })?;
        Ok(Self::from_key(key))
    }

    /// Writes this key to a new file, readable by its owner only; never overwrites.
    pub fn write_new_key_file(&self, path: &Path) -> Result<(), KmsError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| {
            KmsError::Config(format!("cannot create key file {}: {e}", path.display()))
        })?;
        let body = match &self.key {
            LocalKey::Symmetric(kek) => {
                let encoded = Zeroizing::new(STANDARD.encode(kek.expose_secret()));
                Zeroizing::new(format!("{FILE_HEADER}{}\n", encoded.as_str()))
            }
            LocalKey::Rsa(pair) => {
                let pem = pair.private_pem()?;
                Zeroizing::new(format!("{FILE_HEADER}{}", pem.as_str()))
            }
        };
        file.write_all(body.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| KmsError::Config(format!("cannot write key file {}: {e}", path.display())))
    }

    /// `sha256:` + 128 bits, the key id stored in sealed secrets.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn wrap_aad(context: &EncryptionContext) -> Vec<u8> {
        let mut aad = WRAP_AAD_MAGIC.to_vec();
        aad.extend_from_slice(&context.canonical_bytes());
        aad
    }
}

impl fmt::Debug for LocalKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKms")
            .field("fingerprint", &self.fingerprint)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

#[async_trait]
impl KmsProvider for LocalKms {
    async fn decrypt_data_key(
        &self,
        key: &KmsKeyRef,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        if key.provider != KmsProviderKind::Local || key.wrapping != self.wrapping() {
            return Err(KmsError::ProviderMismatch {
                sealed: key.provider.as_str(),
                configured: "local",
            });
        }
        if key.key_id != self.fingerprint {
            return Err(KmsError::WrongKey {
                sealed: key.key_id.clone(),
                available: self.fingerprint.clone(),
            });
        }
        let mismatch = || KmsError::ContextMismatch {
            key_id: key.key_id.clone(),
        };
        let kek = match &self.key {
            LocalKey::Symmetric(kek) => kek,
            // RSA takes no context, as in KMS: the binding rests on the GCM associated data.
            LocalKey::Rsa(pair) => return pair.unwrap(wrapped).ok_or_else(mismatch),
        };
        if wrapped.len() != NONCE_LEN + DataKey::LEN + aead::TAG_LEN {
            return Err(mismatch());
        }
        let (nonce, ciphertext) = wrapped.split_at(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| mismatch())?;
        let plain = aead::open(
            kek.expose_secret(),
            nonce,
            &Self::wrap_aad(context),
            ciphertext,
        )
        .map_err(|e| KmsError::Config(e.to_string()))?
        .ok_or_else(mismatch)?;
        DataKey::from_slice(&plain).map_err(|_| mismatch())
    }
}

#[async_trait]
impl DataKeySealer for LocalKms {
    fn key_ref(&self) -> KmsKeyRef {
        KmsKeyRef {
            provider: KmsProviderKind::Local,
            key_id: self.fingerprint.clone(),
            wrapping: self.wrapping(),
            region: None,
            endpoint: None,
        }
    }

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KmsError> {
        let kek = match &self.key {
            LocalKey::Symmetric(kek) => kek,
            LocalKey::Rsa(pair) => {
                let sealer = RsaPublicKeySealer::local_from_spki(pair.spki_der())?;
                return sealer.generate_data_key(context).await;
            }
        };
        let key = DataKey::generate().map_err(|e| KmsError::Config(e.to_string()))?;
        let (nonce, ciphertext) =
            aead::seal(kek.expose_secret(), &Self::wrap_aad(context), key.expose())
                .map_err(|e| KmsError::Config(e.to_string()))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&ciphertext);
        Ok(GeneratedDataKey { key, wrapped })
    }
}
