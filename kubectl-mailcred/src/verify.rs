//! `verify`: proves a sealed secret opens for the resource as it is now, without showing it.

use anyhow::Context;
use mailcred_core::crd::KmsProviderKind;
use mailcred_core::credential::{self, from_yaml};
use mailcred_core::envelope;
use mailcred_core::kms::{AwsKms, AwsKmsOptions, KmsProviders, LocalKms};

use crate::cli::VerifyArgs;

pub async fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let resource = from_yaml(&text)?;
    let mut providers = KmsProviders::default();
    let Some(sealed) = &resource.spec.sealed_secret else {
        // credential::open says the same, with the namespace/name.
        return Err(credential::open(&resource, &providers)
            .await
            .err()
            .map_or_else(
                || anyhow::anyhow!("the MailCredential holds no sealed secret"),
                anyhow::Error::from,
            ));
    };
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
    if args.login {
        if let Some(oauth) = &resource.spec.oauth
            && oauth.grant == mailcred_core::crd::OAuthGrantKind::RefreshToken
        {
            // Using the sealed refresh token here would spend it where the server rotates
            // refresh tokens: the sidecar's later use of the old one revokes the whole grant.
            anyhow::bail!(
                "verify --login does not use a sealed refreshToken grant: a server that rotates refresh tokens would revoke the grant when the sidecar later uses the sealed one; `authorize` already proved the sign-in (run `verify` without --login to check that it opens)"
            );
        }
        // The sidecar's path, token client included; then one real login per upstream.
        let tokens = mailcred_oauth::OAuthClient::default();
        let opened = credential::open_with_tokens(&resource, &providers, Some(&tokens)).await?;
        println!(
            "ok: the sealed secret of {} opens; fingerprint {}",
            opened.id(),
            opened.sealed_fingerprint
        );
        return crate::verify_login::check(&opened, crate::verify_login::LOGIN_TIMEOUT).await;
    }
    if let Some(oauth) = &resource.spec.oauth {
        // Without a token client here: prove the grant secret opens and fits spec.oauth
        // (`verify --login` goes on to fetch a token).
        let binding = mailcred_core::CredentialBinding::for_resource(&resource)?;
        let secret = envelope::open_grant(&providers, &binding, sealed).await?;
        mailcred_core::grant::validate(oauth, &secret)?;
        println!(
            "ok: the sealed {} grant of {}/{} opens for client {} at {}; fingerprint {}",
            oauth.grant.as_str(),
            binding.context.namespace,
            binding.context.name,
            oauth.client_id,
            oauth.token_endpoint_url()?,
            envelope::fingerprint(sealed)
        );
        return Ok(());
    }
    // The sidecar's own path from resource to password; the password is dropped unused.
    let opened = credential::open(&resource, &providers).await?;
    println!(
        "ok: the sealed secret of {} opens for user {} and {} endpoint(s); fingerprint {}",
        opened.id(),
        opened.username,
        usize::from(opened.smtp.is_some()) + usize::from(opened.imap.is_some()),
        opened.sealed_fingerprint
    );
    Ok(())
}
