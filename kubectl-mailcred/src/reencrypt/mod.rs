//! `reencrypt`: opens each selected sealed secret with its current key and seals the same
//! plaintext again to the target key, for the same namespace, name and endpoints. The
//! plaintext lives only in memory, in zeroizing types, for the time between the two calls.
//! Whoever runs it needs decrypt permission on the old key: an admin or a Job, never the
//! operator (which holds no key at all).

mod cluster;
mod files;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use mailcred_core::crd::{KmsKeyRef, KmsProviderKind, MailCredential, SealedSecret};
use mailcred_core::kms::{
    AwsKms, AwsKmsOptions, AwsKmsSealer, DataKeySealer, KmsProviders, LocalKms, RsaPublicKeySealer,
};
use mailcred_core::{CredentialBinding, envelope};

#[derive(Args, Debug)]
pub struct ReencryptArgs {
    /// The MailCredential to move (in the cluster: required unless --all or --all-namespaces;
    /// with -f: only this one of the files' credentials).
    pub name: Option<String>,
    /// Namespace; default: the kubeconfig context's.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Every MailCredential of the namespace.
    #[arg(long, conflicts_with = "name")]
    pub all: bool,
    /// Every MailCredential the caller can list, in every namespace.
    #[arg(long, conflicts_with_all = ["name", "all", "namespace"])]
    pub all_namespaces: bool,
    /// Read from these files instead of the cluster; each is rewritten in place (or -w).
    #[arg(
        long = "file",
        short = 'f',
        value_name = "FILE",
        conflicts_with = "all_namespaces"
    )]
    pub files: Vec<PathBuf>,
    /// With one -f FILE: write the result here instead of rewriting FILE.
    #[arg(long, short = 'w', value_name = "FILE", requires = "files")]
    pub write: Option<PathBuf>,

    /// Target: AWS KMS key ARN (KMS GenerateDataKey), or with --to-public-key-file the key
    /// whose public half wraps offline.
    #[arg(
        long,
        value_name = "ARN",
        required_unless_present = "to_local_key_file"
    )]
    pub to_kms_key: Option<String>,
    /// Target: a local key file (`kubectl mailcred keygen`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["to_kms_key", "to_public_key_file"])]
    pub to_local_key_file: Option<PathBuf>,
    /// Wrap offline with this public key of --to-kms-key (RSAES_OAEP_SHA_256), as
    /// `seal --kms aws-public-key:FILE` does.
    #[arg(long, value_name = "FILE", requires = "to_kms_key")]
    pub to_public_key_file: Option<PathBuf>,
    /// AWS region of the target key (default: from the ARN, then the environment).
    #[arg(long, value_name = "REGION", requires = "to_kms_key")]
    pub to_kms_region: Option<String>,
    /// KMS endpoint override recorded for the target key (sidecars must trust it).
    #[arg(long, value_name = "URL", requires = "to_kms_key")]
    pub to_kms_endpoint: Option<String>,

    /// Key file that opens secrets sealed with the local provider.
    #[arg(long, value_name = "FILE")]
    pub local_key_file: Option<PathBuf>,
    /// KMS endpoints to trust for opening, besides the AWS environment's.
    #[arg(long = "trusted-kms-endpoint", value_name = "URL")]
    pub trusted_kms_endpoints: Vec<String>,
    /// Print what would change; decrypt nothing, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What happened to one credential.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Moved {
        from: String,
        to: String,
    },
    WouldMove {
        from: String,
        to: String,
    },
    AlreadyOnTarget,
    NotSealed,
    /// Re-sealed by someone else while this run worked on it: left alone.
    ChangedMeanwhile,
}

impl Outcome {
    pub fn describe(&self, id: &str) -> String {
        match self {
            Self::Moved { from, to } => format!("{id}: re-encrypted from {from} to {to}"),
            Self::WouldMove { from, to } => {
                format!("{id}: would re-encrypt from {from} to {to} (dry run)")
            }
            Self::AlreadyOnTarget => format!("{id}: already sealed with the target key"),
            Self::NotSealed => format!("{id}: holds no sealed secret (pending?); skipped"),
            Self::ChangedMeanwhile => format!(
                "{id}: its sealed secret changed while it was re-encrypted; left as it is now (run again to move it)"
            ),
        }
    }

    pub fn is_failure(&self) -> bool {
        *self == Self::ChangedMeanwhile
    }
}

/// The key sealed to, and the reference it records.
pub struct Target {
    sealer: Box<dyn DataKeySealer>,
    key: KmsKeyRef,
}

impl Target {
    pub fn new(sealer: Box<dyn DataKeySealer>) -> Self {
        let key = sealer.key_ref();
        Self { sealer, key }
    }

    async fn from_args(args: &ReencryptArgs) -> anyhow::Result<Self> {
        let sealer: Box<dyn DataKeySealer> = match (&args.to_local_key_file, &args.to_kms_key) {
            (Some(path), _) => Box::new(LocalKms::from_file(path)?),
            (None, Some(arn)) => match &args.to_public_key_file {
                Some(path) => Box::new(RsaPublicKeySealer::from_file(
                    path,
                    arn.clone(),
                    args.to_kms_region.clone(),
                )?),
                None => Box::new(AwsKmsSealer::new(
                    AwsKms::from_env(AwsKmsOptions::default()).await,
                    arn.clone(),
                    args.to_kms_region.clone(),
                    args.to_kms_endpoint.clone(),
                )),
            },
            (None, None) => bail!("give the target: --to-kms-key ARN or --to-local-key-file FILE"),
        };
        let target = Self::new(sealer);
        envelope::validate_key_ref(&target.key).map_err(|e| match e {
            mailcred_core::Error::Malformed { reason, .. } => {
                anyhow::anyhow!("--to-kms-key: {reason}")
            }
            other => anyhow::anyhow!("--to-kms-key: {other}"),
        })?;
        Ok(target)
    }
}

/// The providers that open the secrets still to move (not those already on the target);
/// AWS only when one needs it.
pub async fn openers(
    args: &ReencryptArgs,
    resources: &[&MailCredential],
    target: &Target,
) -> anyhow::Result<KmsProviders> {
    let mut providers = KmsProviders::default();
    let uses = |kind| {
        resources
            .iter()
            .filter_map(|r| r.spec.sealed_secret.as_ref())
            .any(|s| s.kms.provider == kind && s.kms != target.key)
    };
    if uses(KmsProviderKind::Local) {
        let path = args.local_key_file.as_ref().context(
            "a selected credential is sealed with the local provider: give --local-key-file",
        )?;
        providers.local = Some(LocalKms::from_file(path)?);
    }
    if uses(KmsProviderKind::Aws) {
        providers.aws = Some(
            AwsKms::from_env(AwsKmsOptions {
                trusted_endpoints: args.trusted_kms_endpoints.clone(),
                ..AwsKmsOptions::default()
            })
            .await,
        );
    }
    Ok(providers)
}

/// Opens `resource`'s sealed secret and seals it to `target`; the new sealed secret, or why
/// there is none.
pub async fn reseal(
    resource: &MailCredential,
    providers: &KmsProviders,
    target: &Target,
    dry_run: bool,
) -> anyhow::Result<(Outcome, Option<SealedSecret>)> {
    let Some(sealed) = &resource.spec.sealed_secret else {
        return Ok((Outcome::NotSealed, None));
    };
    if sealed.kms == target.key {
        return Ok((Outcome::AlreadyOnTarget, None));
    }
    let from = sealed.kms.key_id.clone();
    let to = target.key.key_id.clone();
    if dry_run {
        return Ok((Outcome::WouldMove { from, to }, None));
    }
    let binding = CredentialBinding::for_resource(resource)?;
    let new = match &resource.spec.oauth {
        Some(oauth) => {
            let secret = envelope::open_grant(providers, &binding, sealed)
                .await
                .with_context(|| format!("cannot open the grant sealed with {from}"))?;
            envelope::seal_grant(target.sealer.as_ref(), &binding, oauth, &secret).await
        }
        None => {
            let password = envelope::open(providers, &binding, sealed)
                .await
                .with_context(|| format!("cannot open the secret sealed with {from}"))?;
            envelope::seal(target.sealer.as_ref(), &binding, &password).await
        }
    }
    .with_context(|| format!("cannot seal to {to}"))?;
    Ok((Outcome::Moved { from, to }, Some(new)))
}

pub fn id(resource: &MailCredential) -> String {
    format!(
        "{}/{}",
        resource.metadata.namespace.as_deref().unwrap_or("-"),
        resource.metadata.name.as_deref().unwrap_or("-")
    )
}

pub async fn run(args: ReencryptArgs) -> anyhow::Result<()> {
    if args.write.is_some() && args.files.len() != 1 {
        bail!("-w FILE goes with exactly one -f FILE");
    }
    if args.files.is_empty() && args.name.is_none() && !args.all && !args.all_namespaces {
        bail!("name the credential, or give --all (this namespace) or --all-namespaces");
    }
    let target = Target::from_args(&args).await?;
    let outcomes = if args.files.is_empty() {
        cluster::run(&args, &target).await?
    } else {
        files::run(&args, &target).await?
    };
    let mut failed = 0;
    for (id, outcome) in &outcomes {
        match outcome {
            Ok(o) => {
                failed += usize::from(o.is_failure());
                println!("{}", o.describe(id));
            }
            Err(e) => {
                failed += 1;
                eprintln!("{id}: {e:#}");
            }
        }
    }
    if outcomes.is_empty() {
        bail!("no MailCredential matched");
    }
    if failed > 0 {
        bail!(
            "{failed} of {} credentials were not re-encrypted",
            outcomes.len()
        );
    }
    Ok(())
}

/// Per credential: its id and what happened (an error stops only that credential).
pub type Report = Vec<(String, anyhow::Result<Outcome>)>;
