//! The `local` provider: a 32-byte key-encryption key in a file, for development, demos and
//! single-machine use. It stands in for KMS, including the context binding: the wrapped data
//! key carries the encryption context as associated data.

use std::fmt;
use std::io::Write;
use std::path::Path;

use async_trait::async_trait;
use aws_lc_rs::aead::NONCE_LEN;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

use super::{DataKeySealer, GeneratedDataKey, KmsProvider};
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
    kek: SecretBox<[u8; 32]>,
    fingerprint: String,
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
            kek: SecretBox::new(Box::new(*kek)),
            fingerprint: format!("sha256:{hex}"),
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
        let encoded = Zeroizing::new(STANDARD.encode(self.kek.expose_secret()));
        let body = Zeroizing::new(format!("{FILE_HEADER}{}\n", encoded.as_str()));
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
            .field("kek", &"[REDACTED]")
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
        if key.provider != KmsProviderKind::Local
            || key.wrapping != DataKeyWrapping::SymmetricDefault
        {
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
        if wrapped.len() != NONCE_LEN + DataKey::LEN + aead::TAG_LEN {
            return Err(mismatch());
        }
        let (nonce, ciphertext) = wrapped.split_at(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| mismatch())?;
        let plain = aead::open(
            self.kek.expose_secret(),
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
            wrapping: DataKeyWrapping::SymmetricDefault,
            region: None,
            endpoint: None,
        }
    }

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KmsError> {
        let key = DataKey::generate().map_err(|e| KmsError::Config(e.to_string()))?;
        let (nonce, ciphertext) = aead::seal(
            self.kek.expose_secret(),
            &Self::wrap_aad(context),
            key.expose(),
        )
        .map_err(|e| KmsError::Config(e.to_string()))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&ciphertext);
        Ok(GeneratedDataKey { key, wrapped })
    }
}
