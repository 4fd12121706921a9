//! The stored form of a sealed password or OAuth grant secret (envelope versions 1 and 2,
//! docs/envelope.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Ciphertext and the reference to the key that unwraps its data key. Never the context
/// (it is derived from the resource) and never plaintext.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecret {
    /// Envelope format version: 1 holds a password, 2 an OAuth grant secret (spec.oauth).
    #[schemars(range(min = 1, max = 255))]
    pub version: u32,
    /// Which key wraps the data key.
    pub kms: KmsKeyRef,
    /// The 256-bit data key, wrapped by `kms` (base64).
    #[schemars(length(min = 1, max = 8192))]
    pub encrypted_data_key: String,
    /// AES-256-GCM nonce, 96 bits (base64).
    #[schemars(length(min = 1, max = 64))]
    pub nonce: String,
    /// AES-256-GCM ciphertext with its 16-byte tag appended (base64).
    #[schemars(length(min = 1, max = 16384))]
    pub ciphertext: String,
}

/// A key-encryption key.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KmsKeyRef {
    pub provider: KmsProviderKind,
    /// AWS: key ARN, alias ARN or key id. Local: `sha256:` fingerprint of the key file.
    #[schemars(length(min = 1, max = 2048))]
    pub key_id: String,
    /// How the data key was wrapped (AWS only): KMS's own envelope, or offline RSA-OAEP with
    /// the key's public half.
    #[serde(default, skip_serializing_if = "DataKeyWrapping::is_default")]
    pub wrapping: DataKeyWrapping,
    /// AWS region of the key; defaults to the one in the key ARN, then the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub region: Option<String>,
    /// KMS endpoint override (LocalStack, moto, VPC endpoint). The sidecar only honours
    /// endpoints it was configured to trust, so editing this cannot redirect KMS calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub endpoint: Option<String>,
}

/// Key-encryption provider.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum KmsProviderKind {
    /// AWS KMS (or an API-compatible endpoint).
    Aws,
    /// A 32-byte key file: development and single-machine use.
    Local,
}

impl KmsProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KmsProviderKind::Aws => "aws",
            KmsProviderKind::Local => "local",
        }
    }
}

/// How the data key is wrapped, named after KMS's EncryptionAlgorithmSpec.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DataKeyWrapping {
    /// KMS GenerateDataKey/Decrypt with the encryption context (or the local key file).
    #[default]
    #[serde(rename = "SYMMETRIC_DEFAULT")]
    SymmetricDefault,
    /// Offline: RSA-OAEP-SHA-256 with the KMS key's public key; KMS Decrypt unwraps.
    #[serde(rename = "RSAES_OAEP_SHA_256")]
    RsaesOaepSha256,
}

impl DataKeyWrapping {
    pub fn is_default(&self) -> bool {
        *self == DataKeyWrapping::SymmetricDefault
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataKeyWrapping::SymmetricDefault => "SYMMETRIC_DEFAULT",
            DataKeyWrapping::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
        }
    }
}
