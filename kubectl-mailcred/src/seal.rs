//! `seal` and `keygen`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mailcred_core::crd::{
    Access, ImapPolicy, MailCredential, MailCredentialSpec, Policy, RateLimits, SealedSecret,
    SmtpPolicy, TlsMode, UpstreamEndpoint,
};
use mailcred_core::kms::{
    AwsKms, AwsKmsOptions, AwsKmsSealer, DataKeySealer, LocalKms, RsaPublicKeySealer,
};
use mailcred_core::policy::{AddressPattern, AddressRole, MailboxPattern};
use mailcred_core::{CredentialBinding, envelope};

use crate::cli::{KeygenArgs, SealArgs};
use crate::password;

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

pub async fn run(args: SealArgs) -> anyhow::Result<()> {
    if args.password.is_some() {
        bail!(
            "refusing --password: a password on the command line is visible in ps, shell history and audit logs; use the prompt or --password-stdin"
        );
    }
    // Everything that can be wrong with the arguments is found before the password is read.
    let kms = parse_kms(&args.kms)?;
    let spec_without_secret = build_spec(&args)?;
    let binding = CredentialBinding::new(&args.namespace, &args.name, &spec_without_secret.0)?;
    let sealer = build_sealer(kms, &args).await?;

    let password = password::read(args.password_stdin)?;
    let sealed = envelope::seal(sealer.as_ref(), &binding, &password)
        .await
        .context("sealing failed")?;
    drop(password);

    let mut spec = spec_without_secret.0;
    spec.sealed_secret = sealed;
    let mut resource = MailCredential::new(&args.name, spec);
    resource.metadata.namespace = Some(args.namespace.clone());
    let yaml =
        serde_saphyr::to_string(&resource).context("cannot render the MailCredential as YAML")?;
    let text = format!("---\n{yaml}");
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .context("cannot write to standard output")?,
    }
    Ok(())
}

/// The spec with a placeholder sealed secret (wrapped so it cannot be used by mistake).
struct UnsealedSpec(MailCredentialSpec);

fn build_spec(args: &SealArgs) -> anyhow::Result<UnsealedSpec> {
    let ca_pem = match &args.ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --ca-file {}", path.display()))?,
        ),
        None => None,
    };
    let smtp = args
        .smtp
        .as_deref()
        .map(|hp| {
            endpoint(
                "smtp",
                hp,
                args.smtp_tls.as_deref(),
                465,
                &ca_pem,
                &args.insecure_reason,
            )
        })
        .transpose()?;
    let imap = args
        .imap
        .as_deref()
        .map(|hp| {
            endpoint(
                "imap",
                hp,
                args.imap_tls.as_deref(),
                993,
                &ca_pem,
                &args.insecure_reason,
            )
        })
        .transpose()?;
    if smtp.is_none() && imap.is_none() {
        bail!("give at least one upstream: --smtp HOST:PORT and/or --imap HOST:PORT");
    }
    if args.service_accounts.iter().any(|s| s.is_empty()) {
        bail!("--service-account must not be empty");
    }
    check_patterns(args)?;
    let mut smtp_policy = SmtpPolicy {
        allowed_senders: args.allowed_senders.clone(),
        allowed_recipients: args.allowed_recipients.clone(),
        rate_limits: RateLimits {
            messages_per_minute: args.messages_per_minute,
            messages_per_hour: args.messages_per_hour,
            recipients_per_minute: None,
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
    smtp_policy.enabled = smtp.is_some();
    let mut imap_policy = ImapPolicy {
        read_only: !args.imap_read_write,
        enabled: imap.is_some(),
        ..ImapPolicy::default()
    };
    if !args.allowed_mailboxes.is_empty() {
        imap_policy.allowed_mailboxes = args.allowed_mailboxes.clone();
    }
    Ok(UnsealedSpec(MailCredentialSpec {
        smtp,
        imap,
        username: args.username.clone(),
        sealed_secret: SealedSecret {
            version: 0,
            kms: mailcred_core::crd::KmsKeyRef {
                provider: mailcred_core::crd::KmsProviderKind::Local,
                key_id: String::new(),
                wrapping: Default::default(),
                region: None,
                endpoint: None,
            },
            encrypted_data_key: String::new(),
            nonce: String::new(),
            ciphertext: String::new(),
        },
        policy: Policy {
            smtp: smtp_policy,
            imap: imap_policy,
        },
        access: Access {
            service_accounts: args.service_accounts.clone(),
        },
    }))
}

/// The relay and the proxy parse policy patterns with the same functions: a pattern refused
/// here would have matched nothing there (every message 550), after the password was sealed.
fn check_patterns(args: &SealArgs) -> anyhow::Result<()> {
    let roles = [
        (
            "--allowed-sender",
            &args.allowed_senders,
            AddressRole::Sender,
        ),
        (
            "--allowed-recipient",
            &args.allowed_recipients,
            AddressRole::Recipient,
        ),
    ];
    for (flag, patterns, role) in roles {
        for p in patterns {
            AddressPattern::parse(p, role).map_err(|e| anyhow::anyhow!("{flag} {p:?}: {e}"))?;
        }
    }
    for p in &args.allowed_mailboxes {
        MailboxPattern::parse(p).map_err(|e| anyhow::anyhow!("--allowed-mailbox {p:?}: {e}"))?;
    }
    Ok(())
}

fn endpoint(
    what: &str,
    host_port: &str,
    tls: Option<&str>,
    implicit_port: u16,
    ca_pem: &Option<String>,
    insecure_reason: &Option<String>,
) -> anyhow::Result<UpstreamEndpoint> {
    let (host, port) = host_port
        .rsplit_once(':')
        .with_context(|| format!("--{what} {host_port:?}: expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .with_context(|| format!("--{what} {host_port:?}: the port must be 1-65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("--{what} {host_port:?}: the host is empty");
    }
    let tls = match tls {
        None if port == implicit_port => TlsMode::Implicit,
        None => TlsMode::Starttls,
        Some("implicit") => TlsMode::Implicit,
        Some("starttls") => TlsMode::Starttls,
        Some("none") => TlsMode::None,
        Some(other) => bail!("--{what}-tls {other:?}: expected implicit, starttls or none"),
    };
    let insecure = tls == TlsMode::None;
    if insecure && insecure_reason.as_deref().is_none_or(str::is_empty) {
        bail!("--{what}-tls none sends the password in plaintext; it needs --insecure-reason");
    }
    Ok(UpstreamEndpoint {
        host: host.to_string(),
        port,
        tls,
        ca_pem: ca_pem.clone(),
        insecure,
        insecure_reason: if insecure {
            insecure_reason.clone()
        } else {
            None
        },
    })
}

async fn build_sealer(kms: KmsScheme, args: &SealArgs) -> anyhow::Result<Box<dyn DataKeySealer>> {
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
    let key = LocalKms::generate()?;
    write_key(&key, &args.output)?;
    eprintln!(
        "wrote a new local key to {} (fingerprint {}); keep it secret, the sidecar reads it with --local-key-file",
        args.output.display(),
        key.fingerprint()
    );
    Ok(())
}

fn write_key(key: &LocalKms, path: &Path) -> anyhow::Result<()> {
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
