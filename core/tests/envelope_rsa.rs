//! Offline sealing to an RSA public key. KMS Decrypt is played by the matching local private
//! key (moto cannot decrypt real RSA-OAEP); RSA unwrapping takes no encryption context, which
//! makes this the test that the AES-GCM associated data alone binds namespace and name.

mod common;

use async_trait::async_trait;
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey,
};
use mailcred_core::crd::{DataKeyWrapping, KmsKeyRef, KmsProviderKind};
use mailcred_core::kms::{KmsProvider, RsaPublicKeySealer};
use mailcred_core::{CredentialBinding, DataKey, EncryptionContext, Error, KmsError, envelope};
use zeroize::Zeroizing;

use common::{binding, password, spec};

const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// Unwraps like KMS Decrypt with EncryptionAlgorithm RSAES_OAEP_SHA_256: ignores any context.
struct PrivateKeyKms(PrivateDecryptingKey);

#[async_trait]
impl KmsProvider for PrivateKeyKms {
    async fn decrypt_data_key(
        &self,
        key: &KmsKeyRef,
        wrapped: &[u8],
        _context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        assert_eq!(key.wrapping, DataKeyWrapping::RsaesOaepSha256);
        let oaep = OaepPrivateDecryptingKey::new(self.0.clone()).unwrap();
        let mut out = Zeroizing::new(vec![0u8; oaep.min_output_size()]);
        let plain = oaep
            .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut out, None)
            .map_err(|_| KmsError::ContextMismatch {
                key_id: key.key_id.clone(),
            })?;
        DataKey::from_slice(plain).map_err(|_| KmsError::ContextMismatch {
            key_id: key.key_id.clone(),
        })
    }
}

fn key_pair() -> (PrivateDecryptingKey, Vec<u8>) {
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let der = AsDer::<PublicKeyX509Der>::as_der(&private.public_key()).unwrap();
    (private, der.as_ref().to_vec())
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

#[tokio::test]
async fn sealed_offline_opens_with_the_private_half() {
    let (private, der) = key_pair();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kms-public.pem");
    std::fs::write(&path, pem(&der)).unwrap();
    let sealer = RsaPublicKeySealer::from_file(&path, KEY_ARN.into(), None).unwrap();
    let sealed = envelope::seal(&sealer, &binding(), &password("offline"))
        .await
        .unwrap();
    assert_eq!(sealed.kms.provider, KmsProviderKind::Aws);
    assert_eq!(sealed.kms.wrapping, DataKeyWrapping::RsaesOaepSha256);
    let opened = envelope::open(&PrivateKeyKms(private), &binding(), &sealed)
        .await
        .unwrap();
    assert_eq!(opened.expose(), "offline");
}

#[tokio::test]
async fn a_moved_copy_fails_in_gcm_even_when_the_key_unwraps() {
    let (private, der) = key_pair();
    let sealer = RsaPublicKeySealer::from_spki(&der, KEY_ARN.into(), None).unwrap();
    let sealed = envelope::seal(&sealer, &binding(), &password("offline"))
        .await
        .unwrap();
    let kms = PrivateKeyKms(private);
    for (ns, name) in [("other", "billing"), ("shop", "payroll")] {
        let moved = CredentialBinding::new(ns, name, &spec()).unwrap();
        let err = envelope::open(&kms, &moved, &sealed).await.unwrap_err();
        assert!(
            matches!(err, Error::SealedSecretMismatch),
            "{ns}/{name}: {err:?}"
        );
    }
    // Relabelling the key id is caught by the associated data even if the key still unwraps.
    let mut relabelled = sealed.clone();
    relabelled.kms.key_id = "arn:aws:kms:us-east-1:111122223333:key/other".into();
    let err = envelope::open(&kms, &binding(), &relabelled)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SealedSecretMismatch), "{err:?}");
}
