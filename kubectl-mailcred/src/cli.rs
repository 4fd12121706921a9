//! Command-line shape. Validation that needs more than clap lives in `validate`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-mailcred",
    version,
    about = "Seal mail passwords into MailCredential resources (used as `kubectl mailcred`)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Encrypt a mail password for one MailCredential and print the resource as YAML;
    /// with -f, re-seal an existing one (new password, the file's other fields kept).
    Seal(Box<SealCommand>),
    /// Move sealed secrets to another key or wrapping scheme, from the cluster or from files
    /// (needs decrypt permission on the old key: run it as an admin or a Job, never the operator).
    Reencrypt(Box<crate::reencrypt::ReencryptArgs>),
    /// Create a pending MailCredential and print a one-time link: the mailbox owner opens it
    /// and types the password, which the page seals in the browser (docs/link-sealing.md).
    Request(Box<RequestArgs>),
    /// Sign in at the OAuth provider (device code, or authorization code + PKCE with a
    /// loopback redirect) and seal the refresh token it issues; the token is never shown.
    Authorize(Box<crate::authorize::AuthorizeArgs>),
    /// Create a key file for the `local` provider (development and single-machine use).
    Keygen(KeygenArgs),
    /// Check that a MailCredential's sealed secret opens for its namespace, name and endpoints
    /// (needs the key: the local key file, or KMS decrypt permission). Never prints the password.
    Verify(VerifyArgs),
    /// Print the plugin version and the envelope format version it writes.
    Version,
    /// Print a shell completion script (e.g. `source <(kubectl-mailcred completion bash)`).
    Completion(CompletionArgs),
}

#[derive(Args, Debug)]
pub struct CompletionArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// MailCredential YAML (a `seal` output or a manifest).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    /// Key file for credentials sealed with the local provider.
    #[arg(long, value_name = "FILE")]
    pub local_key_file: Option<PathBuf>,
    /// KMS endpoints to trust besides the AWS environment's (as the sidecar's
    /// MAILCRED_TRUSTED_KMS_ENDPOINTS).
    #[arg(long = "trusted-kms-endpoint", value_name = "URL")]
    pub trusted_kms_endpoints: Vec<String>,
    /// Also log in to each upstream once (with the password, or an OAuth access token fetched
    /// with the sealed grant) and report the server's answer.
    #[arg(long)]
    pub login: bool,
}

#[derive(Args, Debug)]
pub struct SealCommand {
    #[command(flatten)]
    pub spec: SealArgs,
    /// Re-seal this MailCredential (a `seal` output or `kubectl get -o yaml`): every field is
    /// kept unless a flag gives it anew; only the password (or grant secret) is asked for.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Write the result into this multi-document YAML file, replacing the document with the
    /// same kind, namespace and name (or appending it); other documents stay byte-for-byte.
    #[arg(long, value_name = "FILE", conflicts_with = "write")]
    pub merge_into: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SealArgs {
    /// MailCredential name (bound into the ciphertext). Required unless -f gives it.
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace (bound into the ciphertext); default: the kubeconfig context's, else `default`.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Upstream account name (bound into the ciphertext). Required unless -f gives it.
    #[arg(long)]
    pub username: Option<String>,

    /// Upstream SMTP server, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub smtp: Option<String>,
    /// implicit | starttls | none; default: implicit for 465, starttls otherwise.
    #[arg(long, value_name = "MODE")]
    pub smtp_tls: Option<String>,
    /// Upstream IMAP server, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub imap: Option<String>,
    /// implicit | starttls | none; default: implicit for 993, starttls otherwise.
    #[arg(long, value_name = "MODE")]
    pub imap_tls: Option<String>,
    /// PEM CA bundle both upstream servers' certificates must chain to (instead of system roots).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM CA bundle for the SMTP upstream only (instead of --ca-file).
    #[arg(long, value_name = "FILE")]
    pub smtp_ca_file: Option<PathBuf>,
    /// PEM CA bundle for the IMAP upstream only (instead of --ca-file).
    #[arg(long, value_name = "FILE")]
    pub imap_ca_file: Option<PathBuf>,
    /// Allow `none` TLS modes; requires a reason, recorded in the resource. Tests only.
    #[arg(long, value_name = "REASON")]
    pub insecure_reason: Option<String>,

    /// Key-encryption key: aws:<key-arn>, aws-public-key:<pem-or-der-file>, local:<key-file>.
    /// Required unless -f names an AWS KMS key.
    #[arg(long, value_name = "SCHEME:VALUE")]
    pub kms: Option<String>,
    /// KMS key ARN or id for aws-public-key (the key whose public half is given).
    #[arg(long, value_name = "ARN")]
    pub kms_key_id: Option<String>,
    /// AWS region of the key (default: from the ARN, then the AWS environment).
    #[arg(long)]
    pub kms_region: Option<String>,
    /// KMS endpoint override, recorded in the resource (sidecars must be told to trust it).
    #[arg(long, value_name = "URL")]
    pub kms_endpoint: Option<String>,

    /// ServiceAccount allowed to use the credential (repeatable; at least one, unless -f).
    #[arg(long = "service-account", value_name = "NAME")]
    pub service_accounts: Vec<String>,
    /// Allowed sender address or *@domain (repeatable; default: the username only).
    #[arg(long = "allowed-sender", value_name = "ADDR")]
    pub allowed_senders: Vec<String>,
    /// Allowed recipient address, *@domain or * (repeatable; default: any).
    #[arg(long = "allowed-recipient", value_name = "ADDR")]
    pub allowed_recipients: Vec<String>,
    /// Recipients per message, 1-1000 (default 50).
    #[arg(long, value_name = "N")]
    pub max_recipients: Option<u32>,
    /// Message size limit in bytes, 1024-157286400 (default 25 MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_message_bytes: Option<u64>,
    /// Messages per minute (default: unlimited).
    #[arg(long, value_name = "N")]
    pub messages_per_minute: Option<u32>,
    /// Messages per hour (default: unlimited).
    #[arg(long, value_name = "N")]
    pub messages_per_hour: Option<u32>,
    /// Recipients per minute, over all messages (default: unlimited).
    #[arg(long, value_name = "N")]
    pub recipients_per_minute: Option<u32>,
    /// Recipients per hour, over all messages (default: unlimited).
    #[arg(long, value_name = "N")]
    pub recipients_per_hour: Option<u32>,
    /// Whether applications may send (default: true when --smtp is given).
    #[arg(long, value_name = "BOOL")]
    pub smtp_enabled: Option<bool>,
    /// Whether applications may use IMAP (default: true when --imap is given).
    #[arg(long, value_name = "BOOL")]
    pub imap_enabled: Option<bool>,
    /// Allowed IMAP mailbox or pattern (repeatable; default: INBOX).
    #[arg(long = "allowed-mailbox", value_name = "PATTERN")]
    pub allowed_mailboxes: Vec<String>,
    /// Let applications change mailboxes over IMAP (default: read-only).
    #[arg(long)]
    pub imap_read_write: bool,

    /// Read the password from standard input (one trailing newline is removed).
    #[arg(long)]
    pub password_stdin: bool,
    /// OAuth 2.0 instead of a password (`--oauth-provider` and the grant's flags).
    #[command(flatten)]
    pub oauth: crate::seal_oauth::OAuthArgs,
    /// Refused: a password on the command line leaks into ps, shell history and audit logs.
    #[arg(long, hide = true, value_name = "REFUSED")]
    pub password: Option<String>,

    /// Output format: yaml (default) or json.
    #[arg(long, short = 'o', value_name = "yaml|json")]
    pub output: Option<String>,
    /// Write the resource to FILE (mode 0644) instead of standard output.
    #[arg(long, short = 'w', value_name = "FILE")]
    pub write: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the new key (never overwritten; mode 0600).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// An RSA-3072 key pair instead of a symmetric key: what the registration page seals to
    /// with no cloud account (the public half goes to --public-output).
    #[arg(long)]
    pub rsa: bool,
    /// Where --rsa writes the public key (PEM); default: FILE.pub.
    #[arg(long, value_name = "FILE", requires = "rsa")]
    pub public_output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RequestArgs {
    /// The credential's fields, as for `seal`; --kms names the key the page seals to:
    /// aws-public-key:<file> with --kms-key-id <ARN>, or local:<RSA key or public key file>.
    #[command(flatten)]
    pub spec: SealArgs,
    /// How long the link works, e.g. 10m, 900s, 1h (at most 60m).
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub expires: String,
    /// Let the link replace a sealed secret the credential already holds.
    #[arg(long)]
    pub replace: bool,
    /// Base URL of the registration page (port-forward or Ingress).
    #[arg(
        long,
        value_name = "URL",
        env = "MAILCRED_LINKPAGE_URL",
        default_value = "https://127.0.0.1:8443"
    )]
    pub url: String,
    /// Who asks, shown on the page (default: $USER).
    #[arg(long, value_name = "WHO")]
    pub requested_by: Option<String>,
    /// Create it in the cluster with kubectl (`kubectl create`, or `kubectl patch` with
    /// --replace so the stored secret stays until the owner seals a new one).
    #[arg(long, conflicts_with = "write")]
    pub apply: bool,
}
