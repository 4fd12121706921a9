//! Key-encryption providers: who wraps and unwraps the 256-bit data key.
//!
//! Unwrapping ([`KmsProvider`]) is what the sidecar does under the pod's identity; sealing
//! ([`DataKeySealer`]) is what `kubectl mailcred seal` does. They are separate traits because
//! the offline RSA sealer can wrap but never unwrap.

#[cfg(feature = "aws")]
mod aws;
mod local;
mod local_rsa;
mod rsa;

use async_trait::async_trait;

#[cfg(feature = "aws")]
pub use aws::{AwsKms, AwsKmsOptions, AwsKmsSealer};
pub use local::LocalKms;
pub use local_rsa::{local_rsa_key_id, pem};
pub use rsa::{RsaPublicKeySealer, spki_der};

use crate::binding::EncryptionContext;
use crate::crd::{KmsKeyRef, KmsProviderKind};
use crate::error::KmsError;
use crate::secret::DataKey;

/// Unwraps data keys.
#[async_trait]
pub trait KmsProvider: Send + Sync {
    async fn decrypt_data_key(
        &self,
        key: &KmsKeyRef,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError>;
}

/// A fresh data key and its wrapped form.
pub struct GeneratedDataKey {
    pub key: DataKey,
    pub wrapped: Vec<u8>,
}

/// Creates and wraps data keys for sealing.
#[async_trait]
pub trait DataKeySealer: Send + Sync {
    /// The reference stored in the sealed secret.
    fn key_ref(&self) -> KmsKeyRef;

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KmsError>;
}

/// The providers one process is configured with; unwrapping dispatches on the sealed
/// secret's provider.
#[derive(Default)]
pub struct KmsProviders {
    pub local: Option<LocalKms>,
    #[cfg(feature = "aws")]
    pub aws: Option<AwsKms>,
}

#[async_trait]
impl KmsProvider for KmsProviders {
    async fn decrypt_data_key(
        &self,
        key: &KmsKeyRef,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        match key.provider {
            KmsProviderKind::Local => match &self.local {
                Some(local) => local.decrypt_data_key(key, wrapped, context).await,
                None => Err(KmsError::Config(
                    "the secret was sealed with the local provider, but no local key file is configured (--local-key-file)".into(),
                )),
            },
            #[cfg(feature = "aws")]
            KmsProviderKind::Aws => match &self.aws {
                Some(aws) => aws.decrypt_data_key(key, wrapped, context).await,
                None => Err(KmsError::Config(
                    "the secret was sealed with AWS KMS, but the AWS provider is not enabled in this process".into(),
                )),
            },
            #[cfg(not(feature = "aws"))]
            KmsProviderKind::Aws => Err(KmsError::Config(
                "this build has no AWS KMS provider (feature `aws`)".into(),
            )),
        }
    }
}
