//! The public keys this service seals to, from its own configuration (never from the
//! MailCredential: whoever can edit one must not be able to swap in their own key and read
//! the password the owner types). `--public-key aws:<key ARN>=<file>` for an asymmetric KMS
//! key (its GetPublicKey output), `--public-key local:<file>` for a local RSA key pair.

use std::path::Path;

use mailcred_core::crd::{DataKeyWrapping, KmsKeyRef, KmsProviderKind};
use mailcred_core::kms::{RsaPublicKeySealer, local_rsa_key_id};

/// One configured key: which provider and key id, and the SubjectPublicKeyInfo DER.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub provider: KmsProviderKind,
    pub key_id: String,
    pub spki_der: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct PublicKeys(Vec<PublicKey>);

impl PublicKeys {
    /// Parses the `--public-key` values and reads the files; refuses what is not an RSA key.
    pub fn load(values: &[String]) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        for value in values {
            keys.push(parse_one(value)?);
        }
        Ok(Self(keys))
    }

    /// The key a seal request names, if it is one of ours and wraps with RSA-OAEP.
    pub fn find(&self, kms: &KmsKeyRef) -> Option<&PublicKey> {
        if kms.wrapping != DataKeyWrapping::RsaesOaepSha256 {
            return None;
        }
        self.0
            .iter()
            .find(|k| k.provider == kms.provider && k.key_id == kms.key_id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn read_spki(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("--public-key: cannot read {}: {e}", path.display()))?;
    let der = mailcred_core::kms::spki_der(&bytes)?;
    // The sealer's constructor checks that this is an RSA key usable for OAEP.
    RsaPublicKeySealer::local_from_spki(&der)
        .map_err(|e| anyhow::anyhow!("--public-key {}: {e}", path.display()))?;
    Ok(der)
}

fn parse_one(value: &str) -> anyhow::Result<PublicKey> {
    let usage = "expected aws:<key ARN>=<public key file> or local:<public key file>";
    let (scheme, rest) = value
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("--public-key {value:?}: {usage}"))?;
    match scheme {
        "local" => {
            let spki_der = read_spki(Path::new(rest))?;
            Ok(PublicKey {
                provider: KmsProviderKind::Local,
                key_id: local_rsa_key_id(&spki_der),
                spki_der,
            })
        }
        "aws" => {
            let (key_id, file) = rest
                .rsplit_once('=')
                .ok_or_else(|| anyhow::anyhow!("--public-key {value:?}: {usage}"))?;
            let key_ref = KmsKeyRef {
                provider: KmsProviderKind::Aws,
                key_id: key_id.to_owned(),
                wrapping: DataKeyWrapping::RsaesOaepSha256,
                region: None,
                endpoint: None,
            };
            mailcred_core::envelope::validate_key_ref(&key_ref)
                .map_err(|e| anyhow::anyhow!("--public-key {value:?}: {e}"))?;
            Ok(PublicKey {
                provider: KmsProviderKind::Aws,
                key_id: key_id.to_owned(),
                spki_der: read_spki(Path::new(file))?,
            })
        }
        _ => anyhow::bail!("--public-key {value:?}: {usage}"),
    }
}
