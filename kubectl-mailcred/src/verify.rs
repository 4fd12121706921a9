//! `verify`: proves a sealed secret opens for the resource as it is now, without showing it.

use anyhow::Context;
use mailcred_core::crd::KmsProviderKind;
use mailcred_core::credential::from_yaml;
use mailcred_core::kms::{AwsKms, AwsKmsOptions, KmsProviders, LocalKms};
use mailcred_core::{CredentialBinding, envelope};

use crate::cli::VerifyArgs;

pub async fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let resource = from_yaml(&text)?;
    let binding = CredentialBinding::for_resource(&resource)?;
    let sealed = &resource.spec.sealed_secret;
    let mut providers = KmsProviders::default();
    match sealed.kms.provider {
        KmsProviderKind::Local => {
            let path = args
                .local_key_file
                .as_ref()
                .context("the secret is sealed with the local provider: give --local-key-file")?;
            providers.local = Some(LocalKms::from_file(path)?);
        }
        KmsProviderKind::Aws => {
            providers.aws = Some(
                AwsKms::from_env(AwsKmsOptions {
                    trusted_endpoints: args.trusted_kms_endpoints.clone(),
                    ..AwsKmsOptions::default()
                })
                .await,
            );
        }
    }
    let password = envelope::open(&providers, &binding, sealed).await?;
    drop(password);
    println!(
        "ok: the sealed secret of {}/{} opens for user {} and {} endpoint(s); fingerprint {}",
        binding.context.namespace,
        binding.context.name,
        binding.username,
        binding.endpoints.len(),
        envelope::fingerprint(sealed)
    );
    Ok(())
}
