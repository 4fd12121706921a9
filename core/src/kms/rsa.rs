//! Offline sealing: a locally generated data key wrapped with the public half of an asymmetric
//! KMS key (RSAES_OAEP_SHA_256), so whoever seals needs no KMS permission at all. KMS Decrypt
//! unwraps it later. RSA decryption in KMS takes no encryption context, so for these secrets the
//! namespace/name binding rests on the AES-GCM associated data alone (docs/envelope.md).

use std::path::Path;

use async_trait::async_trait;
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;

use super::{DataKeySealer, GeneratedDataKey};
use crate::binding::EncryptionContext;
use crate::crd::{DataKeyWrapping, KmsKeyRef, KmsProviderKind};
use crate::error::KmsError;
use crate::secret::DataKey;

/// Wraps data keys to a KMS key's RSA public key.
pub struct RsaPublicKeySealer {
    key_ref: KmsKeyRef,
    public_key: OaepPublicEncryptingKey,
}

impl RsaPublicKeySealer {
    /// `spki` is the SubjectPublicKeyInfo from KMS GetPublicKey, as PEM (`PUBLIC KEY`) or DER.
    pub fn from_spki(
        spki: &[u8],
        key_id: String,
        region: Option<String>,
    ) -> Result<Self, KmsError> {
        let der = spki_der(spki)?;
        let public = PublicEncryptingKey::from_der(&der).map_err(|_| {
            KmsError::Config(
                "the public key is not an RSA SubjectPublicKeyInfo (use the output of KMS GetPublicKey for an RSA_2048/3072/4096 ENCRYPT_DECRYPT key)".into(),
            )
        })?;
        let public_key = OaepPublicEncryptingKey::new(public)
            .map_err(|_| KmsError::Config("the RSA key cannot be used for OAEP".into()))?;
        Ok(Self {
            key_ref: KmsKeyRef {
                provider: KmsProviderKind::Aws,
                key_id,
                wrapping: DataKeyWrapping::RsaesOaepSha256,
                region,
                endpoint: None,
            },
            public_key,
        })
    }

    /// A sealer for a local RSA key pair ([`super::LocalKms::generate_rsa`]): provider
    /// `local`, key id from the public key's fingerprint.
    pub fn local_from_spki(spki: &[u8]) -> Result<Self, KmsError> {
        let mut sealer = Self::from_spki(spki, String::new(), None)?;
        let der = spki_der(spki)?;
        sealer.key_ref.provider = KmsProviderKind::Local;
        sealer.key_ref.key_id = super::local_rsa_key_id(&der);
        Ok(sealer)
    }

    /// Bytes of a wrapped data key: the RSA modulus size.
    pub fn wrapped_len(&self) -> usize {
        self.public_key.ciphertext_size()
    }

    pub fn from_file(
        path: &Path,
        key_id: String,
        region: Option<String>,
    ) -> Result<Self, KmsError> {
        let bytes = std::fs::read(path).map_err(|e| {
            KmsError::Config(format!("cannot read public key {}: {e}", path.display()))
        })?;
        Self::from_spki(&bytes, key_id, region)
    }
}

/// DER SubjectPublicKeyInfo from PEM (`PUBLIC KEY`) or DER input.
pub fn spki_der(spki: &[u8]) -> Result<Vec<u8>, KmsError> {
    if spki.starts_with(b"-----BEGIN") {
        Ok(SubjectPublicKeyInfoDer::from_pem_slice(spki)
            .map_err(|e| {
                KmsError::Config(format!("the public key is not a PEM `PUBLIC KEY`: {e}"))
            })?
            .as_ref()
            .to_vec())
    } else {
        Ok(spki.to_vec())
    }
}

#[async_trait]
impl DataKeySealer for RsaPublicKeySealer {
    fn key_ref(&self) -> KmsKeyRef {
        self.key_ref.clone()
    }

    async fn generate_data_key(
        &self,
        _context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KmsError> {
        let key = DataKey::generate().map_err(|e| KmsError::Config(e.to_string()))?;
        let mut wrapped = vec![0u8; self.public_key.ciphertext_size()];
        let len = self
            .public_key
            .encrypt(&OAEP_SHA256_MGF1SHA256, key.expose(), &mut wrapped, None)
            .map_err(|_| KmsError::Config("RSA-OAEP encryption of the data key failed".into()))?
            .len();
        wrapped.truncate(len);
        Ok(GeneratedDataKey { key, wrapped })
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};

    use super::*;

    /// What KMS Decrypt does with RSAES_OAEP_SHA_256, played by a local key pair (moto cannot).
    fn unwrap_locally(private: &PrivateDecryptingKey, wrapped: &[u8]) -> Vec<u8> {
        let oaep = OaepPrivateDecryptingKey::new(private.clone()).unwrap();
        let mut out = vec![0u8; oaep.min_output_size()];
        oaep.decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut out, None)
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn wrapped_key_unwraps_with_the_private_half_only() {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let der = AsDer::<PublicKeyX509Der>::as_der(&private.public_key()).unwrap();
        let sealer = RsaPublicKeySealer::from_spki(
            der.as_ref(),
            "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            None,
        )
        .unwrap();
        let ctx = EncryptionContext {
            namespace: "ns".into(),
            name: "n".into(),
        };
        let generated = sealer.generate_data_key(&ctx).await.unwrap();
        assert_eq!(generated.wrapped.len(), 256);
        assert_eq!(
            unwrap_locally(&private, &generated.wrapped),
            generated.key.expose().to_vec()
        );

        let other = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let oaep = OaepPrivateDecryptingKey::new(other).unwrap();
        let mut out = vec![0u8; oaep.min_output_size()];
        assert!(
            oaep.decrypt(&OAEP_SHA256_MGF1SHA256, &generated.wrapped, &mut out, None)
                .is_err()
        );
    }

    #[test]
    fn rejects_non_rsa_or_garbage_keys() {
        let err = RsaPublicKeySealer::from_spki(b"not a key", "k".into(), None)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("not an RSA SubjectPublicKeyInfo"),
            "{err}"
        );
        let err = RsaPublicKeySealer::from_spki(
            b"-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----\n",
            "k".into(),
            None,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("public key"), "{err}");
    }
}
