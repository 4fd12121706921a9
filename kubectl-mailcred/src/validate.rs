//! Every check the CRD schema, its CEL rules and the operator run (crds/mailcredential.yaml,
//! operator/src/validation.rs), done before the password is asked for: a resource the cluster
//! would refuse must not cost the user a prompt and a KMS call. Messages name the flag.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mailcred_core::policy::{AddressPattern, AddressRole, MailboxPattern};
use mailcred_core::tls::TlsError;

use crate::cli::SealArgs;

/// Schema limits (crds/mailcredential.yaml).
const MAX_HOST_LEN: usize = 253;
const MAX_USERNAME_LEN: usize = 320;
const MAX_INSECURE_REASON_LEN: usize = 1024;
const MAX_CA_PEM_LEN: usize = 65536;
const MAX_SERVICE_ACCOUNTS: usize = 64;
const MAX_ALLOWED_SENDERS: usize = 256;
const MAX_ALLOWED_RECIPIENTS: usize = 1024;
const MAX_ALLOWED_MAILBOXES: usize = 256;
const MAX_RECIPIENTS: std::ops::RangeInclusive<u32> = 1..=1000;
const MAX_MESSAGE_BYTES: std::ops::RangeInclusive<u64> = 1024..=157_286_400;

/// How the resource is printed (`-o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Yaml,
    Json,
}

/// One upstream as the flags give it, before the TLS mode is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    Smtp,
    Imap,
}

impl Upstream {
    pub fn flag(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::Imap => "imap",
        }
    }

    /// The port on which TLS starts with the first byte.
    pub fn implicit_port(self) -> u16 {
        match self {
            Self::Smtp => 465,
            Self::Imap => 993,
        }
    }
}

pub fn output_format(value: Option<&str>) -> anyhow::Result<OutputFormat> {
    match value {
        None | Some("yaml") => Ok(OutputFormat::Yaml),
        Some("json") => Ok(OutputFormat::Json),
        Some(other) => {
            bail!("-o {other:?}: -o now picks the format (yaml|json); write a file with -w FILE")
        }
    }
}

/// `-w FILE` must be creatable: its directory exists and it is not a directory itself.
pub fn write_target(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        bail!("-w {}: is a directory; give a file name", path.display());
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent
        && !dir.is_dir()
    {
        bail!(
            "-w {}: the directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

// The operator's rules, so that nothing the plugin accepts is refused at apply time.
pub(crate) use mailcred_core::names::{is_dns_label, is_dns_subdomain};

pub fn names(name: &str, namespace: &str, username: &str) -> anyhow::Result<()> {
    if !is_dns_subdomain(name) {
        bail!(
            "--name {name:?}: not a valid resource name (lowercase letters, digits, '-' and '.', at most 253 characters)"
        );
    }
    if !is_dns_label(namespace) {
        bail!(
            "--namespace {namespace:?}: not a valid namespace name (lowercase letters, digits and '-', at most 63 characters)"
        );
    }
    if username.is_empty() {
        bail!("--username is empty; give the upstream account name");
    }
    if username.len() > MAX_USERNAME_LEN {
        bail!("--username is longer than {MAX_USERNAME_LEN} characters");
    }
    Ok(())
}

/// `HOST:PORT` (IPv6 in brackets) into a host the TLS layer accepts and a port 1-65535.
pub fn host_port(upstream: Upstream, value: &str) -> anyhow::Result<(String, u16)> {
    let flag = upstream.flag();
    if let Some((scheme, rest)) = value.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        let suggestion = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:{}", url_default_port(upstream, scheme))
        };
        bail!("--{flag} {value:?}: give the host without {scheme}:// (e.g. --{flag} {suggestion})");
    }
    let (host, port) = match value.strip_prefix('[') {
        Some(bracketed) => bracketed
            .split_once("]:")
            .with_context(|| format!("--{flag} {value:?}: expected [IPV6]:PORT"))?,
        None => value.rsplit_once(':').with_context(|| {
            format!(
                "--{flag} {value:?}: expected HOST:PORT (e.g. --{flag} {value}:{})",
                upstream.implicit_port()
            )
        })?,
    };
    if !value.starts_with('[') && host.contains(':') {
        bail!("--{flag} {value:?}: put an IPv6 address in brackets, e.g. [2001:db8::1]:{port}");
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .with_context(|| format!("--{flag} {value:?}: the port must be 1-65535"))?;
    if host.is_empty() {
        bail!("--{flag} {value:?}: the host is empty");
    }
    if host.chars().any(char::is_whitespace) {
        bail!("--{flag} {value:?}: the host contains a space");
    }
    if host.len() > MAX_HOST_LEN {
        bail!("--{flag}: the host is longer than {MAX_HOST_LEN} characters");
    }
    mailcred_core::tls::server_name(host)
        .map_err(|e| anyhow::anyhow!("--{flag} {value:?}: {e} (give a DNS name or IP address)"))?;
    Ok((host.to_string(), port))
}

/// What a user pasting a URL most likely meant.
fn url_default_port(upstream: Upstream, scheme: &str) -> u16 {
    match scheme.to_ascii_lowercase().as_str() {
        "smtp" | "submission" => 587,
        "imap" => 143,
        _ => upstream.implicit_port(),
    }
}

/// The flags clap cannot require because `seal -f` may take them from the file.
pub struct Required<'a> {
    pub name: &'a str,
    pub username: &'a str,
    pub kms: &'a str,
}

pub fn required<'a>(args: &'a SealArgs, hint: &str) -> anyhow::Result<Required<'a>> {
    let need = |flag: &str, value: &'a Option<String>| {
        value
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("{flag} is required{hint}"))
    };
    let required = Required {
        name: need("--name", &args.name)?,
        username: need("--username", &args.username)?,
        kms: need("--kms", &args.kms)?,
    };
    if args.service_accounts.is_empty() {
        bail!("--service-account is required (at least one){hint}");
    }
    Ok(required)
}

/// Flags that only make sense with their endpoint, the insecure reason, and at least one
/// endpoint.
pub fn endpoint_flags(args: &SealArgs) -> anyhow::Result<()> {
    endpoint_flags_paired(args)?;
    if args.smtp.is_none() && args.imap.is_none() {
        bail!("give at least one upstream: --smtp HOST:PORT and/or --imap HOST:PORT");
    }
    Ok(())
}

/// Flags that only make sense with their endpoint flag, and the insecure reason (`seal -f`
/// keeps the file's endpoints when no endpoint flag is given).
pub fn endpoint_flags_paired(args: &SealArgs) -> anyhow::Result<()> {
    let per_endpoint = [
        (
            Upstream::Smtp,
            args.smtp.is_some(),
            args.smtp_tls.is_some(),
            args.smtp_ca_file.is_some(),
            args.smtp_enabled,
        ),
        (
            Upstream::Imap,
            args.imap.is_some(),
            args.imap_tls.is_some(),
            args.imap_ca_file.is_some(),
            args.imap_enabled,
        ),
    ];
    for (upstream, given, tls, ca_file, enabled) in per_endpoint {
        let flag = upstream.flag();
        if !given && (tls || ca_file || enabled == Some(true)) {
            let what = if tls {
                "tls"
            } else if ca_file {
                "ca-file"
            } else {
                "enabled"
            };
            bail!("--{flag}-{what} needs --{flag} HOST:PORT");
        }
        if ca_file && args.ca_file.is_some() {
            bail!(
                "--ca-file and --{flag}-ca-file both give the {flag} CA bundle; give one of them"
            );
        }
    }
    if let Some(reason) = &args.insecure_reason {
        if reason.trim().is_empty() {
            bail!("--insecure-reason is empty; say why plaintext is acceptable");
        }
        if reason.len() > MAX_INSECURE_REASON_LEN {
            bail!("--insecure-reason is longer than {MAX_INSECURE_REASON_LEN} characters");
        }
        let plaintext = [&args.smtp_tls, &args.imap_tls]
            .iter()
            .any(|t| t.as_deref() == Some("none"));
        if !plaintext {
            bail!("--insecure-reason only goes with --smtp-tls none or --imap-tls none");
        }
    }
    Ok(())
}

/// The CA bundle for one endpoint: its own file, else the shared one; parsed as the sidecar will.
pub fn ca_pem(upstream: Upstream, args: &SealArgs) -> anyhow::Result<Option<String>> {
    let (flag, path): (String, &Option<PathBuf>) = match upstream {
        Upstream::Smtp if args.smtp_ca_file.is_some() => {
            ("--smtp-ca-file".into(), &args.smtp_ca_file)
        }
        Upstream::Imap if args.imap_ca_file.is_some() => {
            ("--imap-ca-file".into(), &args.imap_ca_file)
        }
        _ => ("--ca-file".into(), &args.ca_file),
    };
    let Some(path) = path else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {flag} {}", path.display()))?;
    if pem.len() > MAX_CA_PEM_LEN {
        bail!(
            "{flag} {}: larger than {MAX_CA_PEM_LEN} bytes",
            path.display()
        );
    }
    // Same parser as the sidecar's trust store; the wording names the file, not `caPem`.
    mailcred_core::tls::ca_certificates(&pem).map_err(|e| {
        let why = match e {
            TlsError::InvalidPem(e) => format!("not valid PEM ({e})"),
            TlsError::NoCertificate => "contains no PEM CERTIFICATE block".to_string(),
            TlsError::UnusableCertificate(e) => {
                format!("holds a certificate that cannot be a trust anchor ({e})")
            }
            other => other.to_string(),
        };
        anyhow::anyhow!(
            "{flag} {}: {why}; give the CA certificate(s) in PEM form",
            path.display()
        )
    })?;
    Ok(Some(pem))
}

pub fn service_accounts(names: &[String]) -> anyhow::Result<()> {
    if names.len() > MAX_SERVICE_ACCOUNTS {
        bail!(
            "--service-account given {} times; at most {MAX_SERVICE_ACCOUNTS}",
            names.len()
        );
    }
    for (i, n) in names.iter().enumerate() {
        if let Some(full) = n.strip_prefix("system:serviceaccount:") {
            let only = full.rsplit(':').next().unwrap_or_default();
            bail!(
                "--service-account {n:?}: give only the name (--service-account {only}); the namespace is the credential's"
            );
        }
        if !is_dns_subdomain(n) {
            bail!(
                "--service-account {n:?}: not a valid ServiceAccount name (lowercase letters, digits, '-' and '.', at most 253 characters)"
            );
        }
        if names[..i].contains(n) {
            bail!("--service-account {n:?} is given twice");
        }
    }
    Ok(())
}

/// The relay and the proxy parse policy patterns with the same functions: a pattern refused
/// here would have matched nothing there (every message 550), after the password was sealed.
pub fn patterns(args: &SealArgs) -> anyhow::Result<()> {
    let roles = [
        (
            "--allowed-sender",
            &args.allowed_senders,
            AddressRole::Sender,
            MAX_ALLOWED_SENDERS,
        ),
        (
            "--allowed-recipient",
            &args.allowed_recipients,
            AddressRole::Recipient,
            MAX_ALLOWED_RECIPIENTS,
        ),
    ];
    for (flag, patterns, role, max) in roles {
        if patterns.len() > max {
            bail!("{flag} given {} times; at most {max}", patterns.len());
        }
        for p in patterns {
            AddressPattern::parse(p, role).map_err(|e| anyhow::anyhow!("{flag} {p:?}: {e}"))?;
        }
    }
    if args.allowed_mailboxes.len() > MAX_ALLOWED_MAILBOXES {
        bail!(
            "--allowed-mailbox given {} times; at most {MAX_ALLOWED_MAILBOXES}",
            args.allowed_mailboxes.len()
        );
    }
    for p in &args.allowed_mailboxes {
        MailboxPattern::parse(p).map_err(|e| anyhow::anyhow!("--allowed-mailbox {p:?}: {e}"))?;
    }
    Ok(())
}

pub fn numbers(args: &SealArgs) -> anyhow::Result<()> {
    if let Some(n) = args.max_recipients
        && !MAX_RECIPIENTS.contains(&n)
    {
        bail!(
            "--max-recipients {n}: must be {}-{}",
            MAX_RECIPIENTS.start(),
            MAX_RECIPIENTS.end()
        );
    }
    if let Some(n) = args.max_message_bytes
        && !MAX_MESSAGE_BYTES.contains(&n)
    {
        bail!(
            "--max-message-bytes {n}: must be {}-{}",
            MAX_MESSAGE_BYTES.start(),
            MAX_MESSAGE_BYTES.end()
        );
    }
    let rates = [
        ("--messages-per-minute", args.messages_per_minute),
        ("--messages-per-hour", args.messages_per_hour),
        ("--recipients-per-minute", args.recipients_per_minute),
        ("--recipients-per-hour", args.recipients_per_hour),
    ];
    for (flag, rate) in rates {
        if rate == Some(0) {
            bail!("{flag} 0: must be at least 1 (leave the flag out for no limit)");
        }
    }
    Ok(())
}

#[path = "validate_kms.rs"]
mod kms_flags;
pub use kms_flags::kms;

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
