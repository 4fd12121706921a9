//! Sealing a registered account with the configured encrypt-only key, and the MailCredential
//! that carries it: the set's label, the owner label, the pod's ServiceAccount alone in
//! `access.serviceAccounts`, the lifetime as `expiresAt`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use mailcred_core::accounts::{ACCOUNT_SET_LABEL, REGISTERED_BY_LABEL};
use mailcred_core::crd::{Access, MailCredential, MailCredentialSpec};
use mailcred_core::kms::{
    AwsKms, AwsKmsOptions, AwsKmsSealer, DataKeySealer, LocalKms, RsaPublicKeySealer,
};
use mailcred_core::{CredentialBinding, envelope};

use super::args::RegistrationArgs;
use super::errors::{ApiError, Code};
use super::request::Registration;

/// The sealer the flags name: `--seal-public-key-file` (offline RSA), `--seal-kms-key` (KMS
/// GenerateDataKey), or the local key file (development). None of them can decrypt.
pub async fn build_sealer(
    args: &RegistrationArgs,
    local_key_file: Option<&Path>,
    trusted_kms_endpoints: &[String],
    kms_timeout: Duration,
) -> anyhow::Result<Arc<dyn DataKeySealer>> {
    if let (Some(path), Some(key)) = (&args.seal_public_key_file, &args.seal_kms_key) {
        let sealer = RsaPublicKeySealer::from_file(path, key.clone(), args.seal_kms_region.clone())
            .with_context(|| format!("--seal-public-key-file {}", path.display()))?;
        return Ok(Arc::new(sealer));
    }
    if let Some(key) = &args.seal_kms_key {
        if let Some(endpoint) = &args.seal_kms_endpoint
            && !trusted_kms_endpoints.contains(endpoint)
        {
            bail!(
                "--seal-kms-endpoint {endpoint} is not one of --trusted-kms-endpoints: the sidecar could not open what it seals there"
            );
        }
        let kms = AwsKms::from_env(AwsKmsOptions {
            trusted_endpoints: trusted_kms_endpoints.to_vec(),
            timeout: kms_timeout,
        })
        .await;
        return Ok(Arc::new(AwsKmsSealer::new(
            kms,
            key.clone(),
            args.seal_kms_region.clone(),
            args.seal_kms_endpoint.clone(),
        )));
    }
    if let Some(path) = local_key_file {
        let local = LocalKms::from_file(path)
            .with_context(|| format!("--local-key-file {}", path.display()))?;
        return Ok(Arc::new(local));
    }
    bail!(
        "the registration API needs a sealing key: --seal-kms-key ARN (with --seal-public-key-file for offline sealing), or --local-key-file for development"
    )
}

/// Who registers, and where.
pub struct Owner<'a> {
    pub namespace: &'a str,
    pub set: &'a str,
    pub service_account: &'a str,
}

/// The MailCredential for `registration` named `name`, its password sealed with `sealer`.
pub async fn sealed_resource(
    sealer: &dyn DataKeySealer,
    registration: &Registration,
    name: &str,
    owner: &Owner<'_>,
    now: SystemTime,
) -> Result<MailCredential, ApiError> {
    let expires_at = registration
        .lifetime
        .map(|life| timestamp(now + life))
        .transpose()?;
    let mut spec = MailCredentialSpec {
        smtp: registration.smtp.clone(),
        imap: registration.imap.clone(),
        username: registration.username.clone(),
        oauth: None,
        sealed_secret: None,
        seal_request: None,
        policy: registration.policy.clone(),
        access: Access {
            service_accounts: vec![owner.service_account.to_owned()],
        },
        expires_at,
    };
    let failed = |e: mailcred_core::Error| {
        ApiError::new(
            Code::SealFailed,
            format!("sealing the password failed: {e}"),
            "the sidecar's sealing key is not usable: tell the platform team (nothing was stored)",
        )
    };
    let binding = CredentialBinding::new(owner.namespace, name, &spec).map_err(failed)?;
    spec.sealed_secret = Some(
        envelope::seal(sealer, &binding, &registration.password)
            .await
            .map_err(failed)?,
    );
    let labels = BTreeMap::from([
        (ACCOUNT_SET_LABEL.to_owned(), owner.set.to_owned()),
        (
            REGISTERED_BY_LABEL.to_owned(),
            owner.service_account.to_owned(),
        ),
    ]);
    let mut resource = MailCredential::new(name, spec);
    resource.metadata = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(owner.namespace.to_owned()),
        labels: Some(labels),
        ..ObjectMeta::default()
    };
    Ok(resource)
}

pub fn timestamp(at: SystemTime) -> Result<Time, ApiError> {
    k8s_openapi::jiff::Timestamp::try_from(at)
        .map(|t| Time(t.round(k8s_openapi::jiff::Unit::Second).unwrap_or(t)))
        .map_err(|e| {
            ApiError::new(
                Code::InvalidLifetime,
                format!("the lifetime ends out of range: {e}"),
                "give a shorter lifetimeSeconds",
            )
            .at("lifetimeSeconds")
        })
}
