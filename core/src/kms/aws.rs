//! AWS KMS (and API-compatible endpoints such as moto or LocalStack) through aws-sdk-kms.
//! Credentials and the default region come from the standard AWS environment / pod identity.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::Region;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, EncryptionAlgorithmSpec};
use zeroize::Zeroizing;

use super::{DataKeySealer, GeneratedDataKey, KmsProvider};
use crate::binding::EncryptionContext;
use crate::crd::{DataKeyWrapping, KmsKeyRef, KmsProviderKind};
use crate::error::KmsError;
use crate::secret::DataKey;

/// Settings of the AWS provider that the resource cannot change.
#[derive(Clone, Debug)]
pub struct AwsKmsOptions {
    /// Endpoints a sealed secret may name in `kms.endpoint`, besides the environment's own.
    pub trusted_endpoints: Vec<String>,
    /// Bound on one KMS call, retries included.
    pub timeout: Duration,
}

impl Default for AwsKmsOptions {
    fn default() -> Self {
        Self {
            trusted_endpoints: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// (region, endpoint) of a cached client.
type ClientKey = (Option<String>, Option<String>);

/// Unwraps data keys with KMS Decrypt; one client per (region, endpoint).
pub struct AwsKms {
    sdk: aws_config::SdkConfig,
    options: AwsKmsOptions,
    clients: Mutex<HashMap<ClientKey, Client>>,
}

impl AwsKms {
    /// Loads region, credentials and AWS_ENDPOINT_URL from the standard AWS environment.
    pub async fn from_env(options: AwsKmsOptions) -> Self {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self {
            sdk,
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client_for(&self, key: &KmsKeyRef) -> Result<Client, KmsError> {
        let region = match key.region.clone().or_else(|| region_from_arn(&key.key_id)) {
            Some(r) if is_valid_region(&r) => Some(r),
            Some(r) => {
                return Err(KmsError::Config(format!(
                    "region {r:?} is not an AWS region name"
                )));
            }
            None => None,
        };
        let endpoint = match &key.endpoint {
            Some(e) if self.trusts_endpoint(e) => Some(e.clone()),
            Some(e) => {
                return Err(KmsError::UntrustedEndpoint {
                    endpoint: e.clone(),
                });
            }
            None => None,
        };
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| KmsError::Config("KMS client cache poisoned".into()))?;
        let client = clients
            .entry((region.clone(), endpoint.clone()))
            .or_insert_with(|| {
                let mut config = aws_sdk_kms::config::Builder::from(&self.sdk);
                if let Some(r) = region {
                    config = config.region(Region::new(r));
                }
                if let Some(e) = endpoint {
                    config = config.endpoint_url(e);
                }
                Client::from_conf(config.build())
            });
        Ok(client.clone())
    }

    fn trusts_endpoint(&self, endpoint: &str) -> bool {
        let endpoint = endpoint.trim_end_matches('/');
        self.sdk
            .endpoint_url()
            .is_some_and(|e| e.trim_end_matches('/') == endpoint)
            || self
                .options
                .trusted_endpoints
                .iter()
                .any(|t| t.trim_end_matches('/') == endpoint)
    }

    async fn bounded<T, F>(&self, key_id: &str, call: F) -> Result<T, KmsError>
    where
        F: std::future::Future<Output = Result<T, KmsError>>,
    {
        tokio::time::timeout(self.options.timeout, call)
            .await
            .map_err(|_| KmsError::Timeout {
                key_id: key_id.to_string(),
                seconds: self.options.timeout.as_secs(),
            })?
    }
}

#[async_trait]
impl KmsProvider for AwsKms {
    async fn decrypt_data_key(
        &self,
        key: &KmsKeyRef,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        if key.provider != KmsProviderKind::Aws {
            return Err(KmsError::ProviderMismatch {
                sealed: key.provider.as_str(),
                configured: "aws",
            });
        }
        let client = self.client_for(key)?;
        let mut request = client
            .decrypt()
            .key_id(&key.key_id)
            .ciphertext_blob(Blob::new(wrapped));
        request = match key.wrapping {
            DataKeyWrapping::SymmetricDefault => request
                .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
                .set_encryption_context(Some(context.to_map().into_iter().collect())),
            // Asymmetric Decrypt accepts no encryption context; the envelope's AAD binds it.
            DataKeyWrapping::RsaesOaepSha256 => {
                request.encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
            }
        };
        let output = self
            .bounded(&key.key_id, async {
                request
                    .send()
                    .await
                    .map_err(|e| map_sdk_error(&key.key_id, e))
            })
            .await?;
        let plaintext =
            Zeroizing::new(output.plaintext.map(Blob::into_inner).ok_or_else(|| {
                KmsError::Other {
                    key_id: key.key_id.clone(),
                    detail: "Decrypt returned no plaintext".into(),
                }
            })?);
        DataKey::from_slice(&plaintext).map_err(|_| KmsError::ContextMismatch {
            key_id: key.key_id.clone(),
        })
    }
}

/// Seals with KMS GenerateDataKey under one key.
pub struct AwsKmsSealer {
    kms: AwsKms,
    key_ref: KmsKeyRef,
}

impl AwsKmsSealer {
    /// `endpoint` chosen by whoever seals is trusted for sealing and recorded in the spec.
    pub fn new(
        mut kms: AwsKms,
        key_id: String,
        region: Option<String>,
        endpoint: Option<String>,
    ) -> Self {
        if let Some(e) = &endpoint {
            kms.options.trusted_endpoints.push(e.clone());
        }
        let region = region
            .or_else(|| region_from_arn(&key_id))
            .or_else(|| kms.sdk.region().map(|r| r.to_string()));
        Self {
            kms,
            key_ref: KmsKeyRef {
                provider: KmsProviderKind::Aws,
                key_id,
                wrapping: DataKeyWrapping::SymmetricDefault,
                region,
                endpoint,
            },
        }
    }
}

#[async_trait]
impl DataKeySealer for AwsKmsSealer {
    fn key_ref(&self) -> KmsKeyRef {
        self.key_ref.clone()
    }

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KmsError> {
        let key_id = &self.key_ref.key_id;
        let client = self.kms.client_for(&self.key_ref)?;
        let request = client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context.to_map().into_iter().collect()));
        let output = self
            .kms
            .bounded(key_id, async {
                request.send().await.map_err(|e| map_sdk_error(key_id, e))
            })
            .await?;
        let missing = |what: &str| KmsError::Other {
            key_id: key_id.clone(),
            detail: format!("GenerateDataKey returned no {what}"),
        };
        let plaintext = Zeroizing::new(
            output
                .plaintext
                .map(Blob::into_inner)
                .ok_or_else(|| missing("plaintext"))?,
        );
        let wrapped = output
            .ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| missing("ciphertext"))?;
        let key = DataKey::from_slice(&plaintext).map_err(|e| KmsError::Other {
            key_id: key_id.clone(),
            detail: e.to_string(),
        })?;
        Ok(GeneratedDataKey { key, wrapped })
    }
}

/// Maps any KMS operation's failure by its error code, so every operation reports alike.
fn map_sdk_error<E, R>(key_id: &str, err: SdkError<E, R>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let key_id = key_id.to_string();
    let detail = |e: &dyn ProvideErrorMetadata| {
        format!(
            "{}: {}",
            e.code().unwrap_or("unknown"),
            e.message().unwrap_or("no message")
        )
    };
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            match e.code().unwrap_or_default() {
                "InvalidCiphertextException" | "IncorrectKeyException" => {
                    KmsError::ContextMismatch { key_id }
                }
                "DisabledException" | "KMSInvalidStateException" => {
                    KmsError::KeyDisabled { key_id }
                }
                "NotFoundException" => KmsError::KeyNotFound { key_id },
                "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException" => KmsError::AccessDenied {
                    key_id,
                    detail: detail(e),
                },
                "ThrottlingException" | "LimitExceededException" => KmsError::Throttled {
                    key_id,
                    detail: detail(e),
                },
                "KeyUnavailableException"
                | "DependencyTimeoutException"
                | "KMSInternalException" => KmsError::Unreachable {
                    key_id,
                    detail: detail(e),
                },
                _ => KmsError::Other {
                    key_id,
                    detail: detail(e),
                },
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            KmsError::Unreachable {
                key_id,
                detail: DisplayErrorContext(&err).to_string(),
            }
        }
        _ => KmsError::Other {
            key_id,
            detail: DisplayErrorContext(&err).to_string(),
        },
    }
}

/// `arn:aws:kms:REGION:ACCOUNT:key/ID` (or alias) → REGION.
fn region_from_arn(key_id: &str) -> Option<String> {
    let mut parts = key_id.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_partition), Some("kms"), Some(region)) if !region.is_empty() => {
            Some(region.to_string())
        }
        _ => None,
    }
}

fn is_valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_comes_from_the_arn() {
        assert_eq!(
            region_from_arn("arn:aws:kms:eu-west-1:111122223333:key/abc").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_from_arn("alias/mail"), None);
        assert!(is_valid_region("us-gov-west-1"));
        assert!(!is_valid_region("evil.example.com/"));
    }
}
