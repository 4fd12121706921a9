//! `seal -f FILE`: re-seal an existing MailCredential. The file gives every field; a flag
//! that is given replaces its field (endpoint flags replace the whole endpoint). Everything is
//! checked before the password is read, as for a fresh `seal`.

use std::path::Path;

use anyhow::{Context, bail};
use mailcred_core::crd::{DataKeyWrapping, KmsProviderKind, MailCredential, MailCredentialSpec};
use mailcred_core::credential::from_yaml;

use crate::cli::SealArgs;
use crate::seal::{Plan, SealKey, UnsealedSpec, endpoint, parse_kms};
use crate::validate::{self, Upstream};
use crate::{kubeconfig, seal_oauth};

/// Largest file `-f` reads; a MailCredential is a few KiB.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Reads at most [`MAX_FILE_BYTES`] of `path`, naming `flag` in errors.
pub fn read_bounded(flag: &str, path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{flag} {}: cannot read", path.display()))?;
    if !meta.is_file() {
        bail!("{flag} {}: not a file", path.display());
    }
    if meta.len() > MAX_FILE_BYTES {
        bail!(
            "{flag} {}: larger than {MAX_FILE_BYTES} bytes",
            path.display()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("{flag} {}: cannot read", path.display()))
}

pub fn plan(path: &Path, args: &SealArgs) -> anyhow::Result<Plan> {
    let text = read_bounded("-f", path)?;
    let base = from_yaml(&text).map_err(|e| anyhow::anyhow!("-f {}: {e}", path.display()))?;
    let name = base
        .metadata
        .name
        .clone()
        .with_context(|| format!("-f {}: metadata.name is missing", path.display()))?;
    // Name and namespace are bound into the ciphertext: a flag that disagrees with the file
    // is a mistake, not an edit (copy the file and change metadata to seal another one).
    if let Some(flag) = args.name.as_deref().filter(|n| *n != name) {
        bail!(
            "--name {flag:?} conflicts with -f {}, which holds {name:?}; leave --name out, or edit metadata.name to seal another credential",
            path.display()
        );
    }
    let namespace = match (&base.metadata.namespace, &args.namespace) {
        (Some(file), Some(flag)) if file != flag => bail!(
            "--namespace {flag:?} conflicts with -f {}, which holds namespace {file:?}; leave --namespace out",
            path.display()
        ),
        (Some(file), _) => file.clone(),
        (None, Some(flag)) => flag.clone(),
        (None, None) => kubeconfig::namespace(kubeconfig::path_from_env().as_deref())?,
    };
    let mut spec = base.spec.clone();
    spec.sealed_secret = None;
    // Sealing answers a pending link request: it is no longer pending.
    spec.seal_request = None;
    if let Some(username) = &args.username {
        spec.username = username.clone();
    }
    validate::names(&name, &namespace, &spec.username)?;
    overlay(args, &mut spec)?;
    let key = key(path, args, &base.spec)?;
    oauth(path, args, &mut spec)?;
    Ok(Plan {
        namespace,
        name,
        spec: UnsealedSpec(spec),
        key,
        base: Some(base),
    })
}

/// The flags given, over the file's spec.
fn overlay(args: &SealArgs, spec: &mut MailCredentialSpec) -> anyhow::Result<()> {
    validate::endpoint_flags_paired(args)?;
    if let Some(hp) = &args.smtp {
        let added = spec.smtp.is_none();
        spec.smtp = Some(endpoint(
            Upstream::Smtp,
            hp,
            args.smtp_tls.as_deref(),
            args,
        )?);
        spec.policy.smtp.enabled |= added && args.smtp_enabled.is_none();
    }
    if let Some(hp) = &args.imap {
        let added = spec.imap.is_none();
        spec.imap = Some(endpoint(
            Upstream::Imap,
            hp,
            args.imap_tls.as_deref(),
            args,
        )?);
        spec.policy.imap.enabled |= added && args.imap_enabled.is_none();
    }
    if !args.service_accounts.is_empty() {
        validate::service_accounts(&args.service_accounts)?;
        spec.access.service_accounts = args.service_accounts.clone();
    }
    validate::patterns(args)?;
    validate::numbers(args)?;
    let smtp = &mut spec.policy.smtp;
    if !args.allowed_senders.is_empty() {
        smtp.allowed_senders = args.allowed_senders.clone();
    }
    if !args.allowed_recipients.is_empty() {
        smtp.allowed_recipients = args.allowed_recipients.clone();
    }
    let numbers = [
        (
            &mut smtp.rate_limits.messages_per_minute,
            args.messages_per_minute,
        ),
        (
            &mut smtp.rate_limits.messages_per_hour,
            args.messages_per_hour,
        ),
        (
            &mut smtp.rate_limits.recipients_per_minute,
            args.recipients_per_minute,
        ),
        (
            &mut smtp.rate_limits.recipients_per_hour,
            args.recipients_per_hour,
        ),
    ];
    for (field, flag) in numbers {
        if flag.is_some() {
            *field = flag;
        }
    }
    if let Some(n) = args.max_recipients {
        smtp.max_recipients = n;
    }
    if let Some(n) = args.max_message_bytes {
        smtp.max_message_bytes = n;
    }
    if let Some(on) = args.smtp_enabled {
        smtp.enabled = on;
    }
    let imap = &mut spec.policy.imap;
    if let Some(on) = args.imap_enabled {
        imap.enabled = on;
    }
    if !args.allowed_mailboxes.is_empty() {
        imap.allowed_mailboxes = args.allowed_mailboxes.clone();
    }
    if args.imap_read_write {
        imap.read_only = false;
    }
    Ok(())
}

/// `--kms` when given; else the AWS KMS key of the file's sealed secret. Local keys and the
/// offline public key are files the resource does not hold, so they must be named again.
fn key(path: &Path, args: &SealArgs, spec: &MailCredentialSpec) -> anyhow::Result<SealKey> {
    if let Some(kms) = &args.kms {
        let scheme = parse_kms(kms)?;
        validate::kms(&scheme, args)?;
        return Ok(SealKey::Scheme(scheme));
    }
    for (flag, given) in [
        ("--kms-key-id", args.kms_key_id.is_some()),
        ("--kms-region", args.kms_region.is_some()),
        ("--kms-endpoint", args.kms_endpoint.is_some()),
    ] {
        if given {
            bail!("{flag} needs --kms: with -f alone the file's key is kept as it is");
        }
    }
    let file = path.display();
    let Some(sealed) = &spec.sealed_secret else {
        bail!("-f {file} holds no sealed secret, so it names no key: give --kms");
    };
    let kms = &sealed.kms;
    match (kms.provider, kms.wrapping) {
        (KmsProviderKind::Aws, DataKeyWrapping::SymmetricDefault) => Ok(SealKey::Kept(kms.clone())),
        (KmsProviderKind::Aws, DataKeyWrapping::RsaesOaepSha256) => bail!(
            "-f {file} is sealed offline to the public half of {}: give --kms aws-public-key:<file> --kms-key-id {}",
            kms.key_id,
            kms.key_id
        ),
        (KmsProviderKind::Local, _) => bail!(
            "-f {file} is sealed with a local key ({}): give --kms local:<key-file>",
            kms.key_id
        ),
    }
}

/// The file's `spec.oauth` is kept unless `--oauth-provider` gives a new one; either way the
/// grant's secret flags must fit it, and a password does not.
fn oauth(path: &Path, args: &SealArgs, spec: &mut MailCredentialSpec) -> anyhow::Result<()> {
    if args.oauth.requested() {
        spec.oauth = Some(seal_oauth::spec_from_args(
            &args.oauth,
            args.password_stdin,
        )?);
        return Ok(());
    }
    let Some(oauth) = &spec.oauth else {
        return Ok(());
    };
    if args.password_stdin {
        bail!(
            "--password-stdin conflicts with -f {}: it is an OAuth credential (spec.oauth); give the grant's secret (--refresh-token-stdin, --client-secret-file, ...)",
            path.display()
        );
    }
    seal_oauth::check_sources(&args.oauth, oauth, seal_oauth::RefreshToken::Stdin)
}

/// The output: the file's resource with the new spec, without what the API server owns
/// (status, uid, resourceVersion, managedFields), so it applies as a manifest.
pub fn keep_metadata(
    mut base: MailCredential,
    namespace: &str,
    spec: MailCredentialSpec,
) -> MailCredential {
    let meta = &mut base.metadata;
    meta.namespace = Some(namespace.to_string());
    meta.uid = None;
    meta.resource_version = None;
    meta.generation = None;
    meta.creation_timestamp = None;
    meta.managed_fields = None;
    meta.self_link = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
    base.spec = spec;
    base.status = None;
    base
}
