//! `seal` and `keygen`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mailcred_core::crd::{
    Access, ImapPolicy, KmsKeyRef, MailCredential, MailCredentialSpec, Policy, RateLimits,
    SmtpPolicy, TlsMode, UpstreamEndpoint,
};
use mailcred_core::kms::{
    AwsKms, AwsKmsOptions, AwsKmsSealer, DataKeySealer, LocalKms, RsaPublicKeySealer,
};
use mailcred_core::{CredentialBinding, envelope};

use crate::cli::{KeygenArgs, SealArgs, SealCommand};
use crate::validate::{self, OutputFormat, Upstream};
use crate::{kubeconfig, merge, password, reseal, seal_oauth};

/// Where the data key comes from, parsed from `--kms`.
#[derive(Debug, PartialEq, Eq)]
pub enum KmsScheme {
    Aws(String),
    AwsPublicKey(PathBuf),
    Local(PathBuf),
}

pub fn parse_kms(value: &str) -> anyhow::Result<KmsScheme> {
    let (scheme, rest) = value.split_once(':').unwrap_or((value, ""));
    if rest.is_empty() {
        bail!("--kms {value:?}: expected aws:<key-arn>, aws-public-key:<file> or local:<key-file>");
    }
    match scheme {
        "aws" => Ok(KmsScheme::Aws(rest.to_string())),
        "aws-public-key" => Ok(KmsScheme::AwsPublicKey(PathBuf::from(rest))),
        "local" => Ok(KmsScheme::Local(PathBuf::from(rest))),
        other => bail!(
            "--kms: unknown scheme {other:?}; use aws:<key-arn>, aws-public-key:<file> or local:<key-file>"
        ),
    }
}

pub async fn run(cmd: SealCommand) -> anyhow::Result<()> {
    let args = &cmd.spec;
    if args.password.is_some() {
        bail!(
            "refusing --password: a password on the command line is visible in ps, shell history and audit logs; use the prompt or --password-stdin"
        );
    }
    // Everything that can be wrong with the arguments is found before the password is read.
    let format = validate::output_format(args.output.as_deref())?;
    if let Some(path) = &args.write {
        validate::write_target(path)?;
    }
    if let Some(path) = &cmd.merge_into {
        merge::check_target(path, format)?;
    }
    let plan = match &cmd.file {
        None => fresh_plan(args)?,
        Some(path) => reseal::plan(path, args)?,
    };
    let Plan {
        namespace,
        name,
        spec: UnsealedSpec(mut spec),
        key,
        base,
    } = plan;
    // Checked with the OAuth settings as given; a service-account key may complete them.
    CredentialBinding::new(&namespace, &name, &spec)?;
    let sealer = match key {
        SealKey::Scheme(kms) => build_sealer(kms, args).await?,
        SealKey::Kept(key_ref) => kept_sealer(key_ref).await,
    };

    let sealed = match spec.oauth.clone() {
        None => {
            let binding = CredentialBinding::new(&namespace, &name, &spec)?;
            let password = password::read(args.password_stdin)?;
            envelope::seal(sealer.as_ref(), &binding, &password)
                .await
                .context("sealing failed")?
        }
        Some(mut oauth) => {
            let secret = seal_oauth::read_grant(&args.oauth, &mut oauth)?;
            spec.oauth = Some(oauth.clone());
            let binding = CredentialBinding::new(&namespace, &name, &spec)?;
            envelope::seal_grant(sealer.as_ref(), &binding, &oauth, &secret)
                .await
                .context("sealing failed")?
        }
    };

    spec.sealed_secret = Some(sealed);
    let resource = match base {
        Some(base) => reseal::keep_metadata(base, &namespace, spec),
        None => {
            let mut resource = MailCredential::new(&name, spec);
            resource.metadata.namespace = Some(namespace);
            resource
        }
    };
    let text = render(&resource, format)?;
    match (&args.write, &cmd.merge_into) {
        (Some(path), _) => write_file(path, &text)?,
        (None, Some(path)) => merge::merge_into(path, &resource, &text)?,
        (None, None) => std::io::stdout()
            .write_all(text.as_bytes())
            .context("cannot write to standard output")?,
    }
    Ok(())
}

/// What to seal: for whom, the spec without its secret, and with which key.
pub(crate) struct Plan {
    pub namespace: String,
    pub name: String,
    pub spec: UnsealedSpec,
    pub key: SealKey,
    /// The resource `-f` read, whose metadata the output keeps.
    pub base: Option<MailCredential>,
}

/// `--kms` as given, or the AWS KMS key the re-sealed file names.
pub(crate) enum SealKey {
    Scheme(KmsScheme),
    Kept(KmsKeyRef),
}

fn fresh_plan(args: &SealArgs) -> anyhow::Result<Plan> {
    let required = validate::required(
        args,
        " (or re-seal an existing MailCredential with -f FILE)",
    )?;
    let namespace = match &args.namespace {
        Some(namespace) => namespace.clone(),
        None => kubeconfig::namespace(kubeconfig::path_from_env().as_deref())?,
    };
    validate::names(required.name, &namespace, required.username)?;
    let kms = parse_kms(required.kms)?;
    validate::kms(&kms, args)?;
    let mut spec = build_spec(args)?;
    if args.oauth.requested() {
        spec.0.oauth = Some(seal_oauth::spec_from_args(
            &args.oauth,
            args.password_stdin,
        )?);
    }
    Ok(Plan {
        namespace,
        name: required.name.to_string(),
        spec,
        key: SealKey::Scheme(kms),
        base: None,
    })
}

/// A sealer for the key a re-sealed file names (AWS KMS with its own wrapping only: the
/// caller checked).
async fn kept_sealer(key_ref: KmsKeyRef) -> Box<dyn DataKeySealer> {
    let kms = AwsKms::from_env(AwsKmsOptions::default()).await;
    Box::new(AwsKmsSealer::new(
        kms,
        key_ref.key_id,
        key_ref.region,
        key_ref.endpoint,
    ))
}

pub(crate) fn render(resource: &MailCredential, format: OutputFormat) -> anyhow::Result<String> {
    Ok(match format {
        OutputFormat::Yaml => {
            let yaml = serde_saphyr::to_string(resource)
                .context("cannot render the MailCredential as YAML")?;
            format!("---\n{yaml}")
        }
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(resource)
                .context("cannot render the MailCredential as JSON")?;
            format!("{json}\n")
        }
    })
}

/// The resource holds no plaintext, so it may be world-readable like any manifest (0644).
pub(crate) fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The spec with a placeholder sealed secret (wrapped so it cannot be used by mistake).
pub(crate) struct UnsealedSpec(pub(crate) MailCredentialSpec);

pub(crate) fn build_spec(args: &SealArgs) -> anyhow::Result<UnsealedSpec> {
    validate::endpoint_flags(args)?;
    let smtp = args
        .smtp
        .as_deref()
        .map(|hp| endpoint(Upstream::Smtp, hp, args.smtp_tls.as_deref(), args))
        .transpose()?;
    let imap = args
        .imap
        .as_deref()
        .map(|hp| endpoint(Upstream::Imap, hp, args.imap_tls.as_deref(), args))
        .transpose()?;
    validate::service_accounts(&args.service_accounts)?;
    validate::patterns(args)?;
    validate::numbers(args)?;
    let mut smtp_policy = SmtpPolicy {
        allowed_senders: args.allowed_senders.clone(),
        allowed_recipients: args.allowed_recipients.clone(),
        rate_limits: RateLimits {
            messages_per_minute: args.messages_per_minute,
            messages_per_hour: args.messages_per_hour,
            recipients_per_minute: args.recipients_per_minute,
            recipients_per_hour: args.recipients_per_hour,
        },
        ..SmtpPolicy::default()
    };
    if let Some(n) = args.max_recipients {
        smtp_policy.max_recipients = n;
    }
    if let Some(n) = args.max_message_bytes {
        smtp_policy.max_message_bytes = n;
    }
    smtp_policy.enabled = args.smtp_enabled.unwrap_or(smtp.is_some());
    let mut imap_policy = ImapPolicy {
        read_only: !args.imap_read_write,
        enabled: args.imap_enabled.unwrap_or(imap.is_some()),
        ..ImapPolicy::default()
    };
    if !args.allowed_mailboxes.is_empty() {
        imap_policy.allowed_mailboxes = args.allowed_mailboxes.clone();
    }
    Ok(UnsealedSpec(MailCredentialSpec {
        smtp,
        imap,
        username: args.username.clone().unwrap_or_default(),
        oauth: None,
        sealed_secret: None,
        seal_request: None,
        policy: Policy {
            smtp: smtp_policy,
            imap: imap_policy,
        },
        access: Access {
            service_accounts: args.service_accounts.clone(),
        },
        expires_at: None,
    }))
}

pub(crate) fn endpoint(
    upstream: Upstream,
    host_port: &str,
    tls: Option<&str>,
    args: &SealArgs,
) -> anyhow::Result<UpstreamEndpoint> {
    let what = upstream.flag();
    let (host, port) = validate::host_port(upstream, host_port)?;
    let tls = match tls {
        None if port == upstream.implicit_port() => TlsMode::Implicit,
        None => TlsMode::Starttls,
        Some("implicit") => TlsMode::Implicit,
        Some("starttls") => TlsMode::Starttls,
        Some("none") => TlsMode::None,
        Some(other) => bail!("--{what}-tls {other:?}: expected implicit, starttls or none"),
    };
    let insecure = tls == TlsMode::None;
    let insecure_reason = &args.insecure_reason;
    if insecure && insecure_reason.as_deref().is_none_or(str::is_empty) {
        bail!("--{what}-tls none sends the password in plaintext; it needs --insecure-reason");
    }
    Ok(UpstreamEndpoint {
        host,
        port,
        tls,
        ca_pem: validate::ca_pem(upstream, args)?,
        insecure,
        insecure_reason: if insecure {
            insecure_reason.clone()
        } else {
            None
        },
    })
}

pub(crate) async fn build_sealer(
    kms: KmsScheme,
    args: &SealArgs,
) -> anyhow::Result<Box<dyn DataKeySealer>> {
    Ok(match kms {
        KmsScheme::Local(path) => Box::new(LocalKms::from_file(&path)?),
        KmsScheme::AwsPublicKey(path) => {
            let key_id = args.kms_key_id.clone().context(
                "--kms aws-public-key:<file> needs --kms-key-id <key ARN>: KMS Decrypt must know which key unwraps",
            )?;
            Box::new(RsaPublicKeySealer::from_file(
                &path,
                key_id,
                args.kms_region.clone(),
            )?)
        }
        KmsScheme::Aws(key_id) => {
            let kms = AwsKms::from_env(AwsKmsOptions::default()).await;
            Box::new(AwsKmsSealer::new(
                kms,
                key_id,
                args.kms_region.clone(),
                args.kms_endpoint.clone(),
            ))
        }
    })
}

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    if args.rsa {
        return crate::request::keygen_rsa(args);
    }
    let key = LocalKms::generate()?;
    write_key(&key, &args.output)?;
    eprintln!(
        "wrote a new local key to {} (fingerprint {}); keep it secret, the sidecar reads it with --local-key-file",
        args.output.display(),
        key.fingerprint()
    );
    Ok(())
}

pub(crate) fn write_key(key: &LocalKms, path: &Path) -> anyhow::Result<()> {
    Ok(key.write_new_key_file(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_schemes_parse_and_unknown_ones_are_refused() {
        assert_eq!(
            parse_kms("aws:arn:aws:kms:us-east-1:111122223333:key/x").unwrap(),
            KmsScheme::Aws("arn:aws:kms:us-east-1:111122223333:key/x".into())
        );
        assert_eq!(
            parse_kms("local:/k").unwrap(),
            KmsScheme::Local("/k".into())
        );
        assert_eq!(
            parse_kms("aws-public-key:pub.pem").unwrap(),
            KmsScheme::AwsPublicKey("pub.pem".into())
        );
        let err = parse_kms("gcp:projects/x").unwrap_err().to_string();
        assert!(err.contains("unknown scheme \"gcp\""), "{err}");
        assert!(parse_kms("aws").is_err());
    }
}
