//! Command line and environment of the sidecar.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::builder::TypedValueParser;
use mailcred_core::sidecar_contract as contract;

/// mailcred sidecar: serves SMTP (and IMAP) on loopback to the application and authenticates
/// upstream with a MailCredential's password, which the application never sees.
#[derive(Parser, Debug, Clone)]
#[command(name = "mailcred-sidecar", version)]
pub struct Args {
    /// MailCredential name(s) in the pod's namespace (repeat or comma-separate).
    #[arg(long = contract::FLAG_CREDENTIAL, env = contract::ENV_CREDENTIALS, value_delimiter = ',')]
    pub credentials: Vec<String>,

    /// Which of the credentials the SMTP relay uses (default: the first).
    #[arg(long, env = contract::ENV_SMTP_CREDENTIAL)]
    pub smtp_credential: Option<String>,

    /// Which of the credentials the IMAP proxy uses (default: the first).
    #[arg(long, env = contract::ENV_IMAP_CREDENTIAL)]
    pub imap_credential: Option<String>,

    /// Read the MailCredential from this YAML file instead of the Kubernetes API
    /// (single-machine use, tests). The file is re-read when it changes.
    #[arg(long, env = contract::ENV_CREDENTIAL_FILE, conflicts_with = "credentials")]
    pub credential_file: Option<PathBuf>,

    /// Namespace of the credentials (default: the pod's, from the service account mount).
    #[arg(long = contract::FLAG_NAMESPACE, env = contract::ENV_POD_NAMESPACE)]
    pub namespace: Option<String>,

    /// The pod's ServiceAccount; when set, a credential that does not list it is refused.
    #[arg(long = contract::FLAG_SERVICE_ACCOUNT, env = contract::ENV_SERVICE_ACCOUNT)]
    pub service_account: Option<String>,

    /// Pod name for audit lines.
    #[arg(long, env = contract::ENV_POD_NAME, default_value = "")]
    pub pod: String,

    /// SMTP listener for the application.
    #[arg(
        long = contract::FLAG_SMTP_LISTEN,
        env = contract::ENV_SMTP_LISTEN,
        default_value = contract::DEFAULT_SMTP_LISTEN
    )]
    pub smtp_listen: SocketAddr,

    /// IMAP listener for the application.
    #[arg(
        long = contract::FLAG_IMAP_LISTEN,
        env = contract::ENV_IMAP_LISTEN,
        default_value = contract::DEFAULT_IMAP_LISTEN
    )]
    pub imap_listen: SocketAddr,

    /// Health and metrics listener (/healthz, /readyz, /metrics).
    #[arg(
        long = contract::FLAG_ADMIN_LISTEN,
        env = contract::ENV_ADMIN_LISTEN,
        default_value = contract::DEFAULT_ADMIN_LISTEN
    )]
    pub admin_listen: SocketAddr,

    /// Scrapeable metrics listener, usually on the pod IP (`0.0.0.0:15091`): serves `/metrics`
    /// only, no health, no credential, so it is the one listener allowed off loopback.
    /// Unset: metrics only on the loopback admin listener.
    #[arg(long = contract::FLAG_METRICS_LISTEN, env = contract::ENV_METRICS_LISTEN)]
    pub metrics_listen: Option<SocketAddr>,

    /// Allow listeners on non-loopback addresses. Exposes the account to the network.
    #[arg(long)]
    pub unsafe_listen_any: bool,

    /// How long a decrypted password stays in memory (seconds) before it is dropped and zeroized.
    #[arg(
        long = contract::FLAG_CACHE_TTL_SECONDS,
        env = contract::ENV_CACHE_TTL_SECONDS,
        default_value_t = contract::DEFAULT_CACHE_TTL_SECONDS
    )]
    pub cache_ttl_seconds: u64,

    /// Key file of the local KMS provider (development, single machine).
    #[arg(long, env = contract::ENV_LOCAL_KEY_FILE)]
    pub local_key_file: Option<PathBuf>,

    /// KMS endpoints a sealed secret may name (comma-separated).
    #[arg(
        long = contract::FLAG_TRUSTED_KMS_ENDPOINTS,
        env = contract::ENV_TRUSTED_KMS_ENDPOINTS,
        value_delimiter = ','
    )]
    pub trusted_kms_endpoints: Vec<String>,

    /// Disable the AWS KMS provider (no AWS environment needed).
    #[arg(long, env = contract::ENV_NO_AWS)]
    pub no_aws: bool,

    /// Longest SMTP command line, CRLF included (1000..8192).
    #[arg(long, default_value_t = 1000)]
    pub smtp_max_line: usize,

    /// Idle timeout waiting for an SMTP command (seconds).
    #[arg(long, default_value_t = 300)]
    pub smtp_command_timeout: u64,

    /// Timeout waiting for DATA bytes (seconds).
    #[arg(long, default_value_t = 180)]
    pub smtp_data_timeout: u64,

    /// Timeout for one upstream delivery (seconds).
    #[arg(long, default_value_t = 60)]
    pub upstream_timeout: u64,

    /// Pooled upstream connections.
    #[arg(long, default_value_t = 8)]
    pub upstream_pool_size: u32,

    /// Maximum concurrent application connections per protocol.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,

    /// Grace period for in-flight messages on SIGTERM (seconds).
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace: u64,

    /// File holding a token the application must present with SMTP AUTH (optional).
    #[arg(long, env = contract::ENV_SMTP_TOKEN_FILE)]
    pub smtp_token_file: Option<PathBuf>,

    /// File holding a token the application must present with IMAP LOGIN (optional).
    #[arg(long, env = contract::ENV_IMAP_TOKEN_FILE)]
    pub imap_token_file: Option<PathBuf>,

    /// Longest IMAP APPEND message in bytes (streamed, never held whole).
    #[arg(long, default_value_t = 25 * 1024 * 1024)]
    pub imap_max_append: u64,

    /// IMAP autologout: minutes without a command (RFC 3501 asks for at least 30).
    #[arg(long, default_value_t = 30)]
    pub imap_idle_minutes: u64,

    /// Account-set mode (docs/accounts.md): serve every MailCredential of the namespace
    /// labelled `mailcred.io/account-set=SET`; the application picks one per connection
    /// (SMTP AUTH / IMAP LOGIN with the account's name and the app token).
    #[arg(
        long = contract::FLAG_ACCOUNT_SET,
        env = contract::ENV_ACCOUNT_SET,
        conflicts_with_all = ["credentials", "credential_file", "smtp_credential", "imap_credential", "smtp_token_file", "imap_token_file"]
    )]
    pub account_set: Option<String>,

    /// Account-set mode without an API server: the set's MailCredential manifests are the
    /// `*.yaml` files of this directory (re-read when they change).
    #[arg(long)]
    pub credential_dir: Option<PathBuf>,

    /// The app's local token (SMTP AUTH, IMAP LOGIN, registration API), read from this file.
    #[arg(
        long = contract::FLAG_APP_TOKEN_FILE,
        env = contract::ENV_APP_TOKEN_FILE,
        conflicts_with = "write_app_token"
    )]
    pub app_token_file: Option<PathBuf>,

    /// Make the app token: 32 random bytes, hex, written to this path with mode 0440 (the
    /// in-memory volume the app containers mount read-only). A well-formed token already
    /// there (a sidecar container restart) is kept, so the app's copy stays valid.
    #[arg(long = contract::FLAG_WRITE_APP_TOKEN)]
    pub write_app_token: Option<PathBuf>,

    /// Most decrypted account plaintexts held at once (least recently used evicted).
    #[arg(
        long = contract::FLAG_ACCOUNT_CACHE_SIZE,
        env = contract::ENV_ACCOUNT_CACHE_SIZE,
        default_value_t = contract::DEFAULT_ACCOUNT_CACHE_SIZE,
        value_parser = clap::value_parser!(u32).range(1..=100_000).map(|n| n as usize)
    )]
    pub account_cache_size: usize,

    /// The registration API of account-set mode (docs/registration-api.yaml).
    #[command(flatten)]
    pub registration: crate::registration::RegistrationArgs,

    /// How often the credential file is checked for changes (milliseconds).
    #[arg(long, default_value_t = 1000)]
    pub file_poll_ms: u64,
}

impl Args {
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_seconds.max(1))
    }
}

#[cfg(test)]
#[path = "cli_webhook_tests.rs"]
mod webhook_tests;

#[cfg(test)]
mod tests {
    use clap::Parser;
    use mailcred_core::sidecar_contract::{self as contract, flag};

    use super::Args;

    /// The argv `operator/src/webhook/inject.rs` writes, built from the same constants.
    #[test]
    fn the_argv_the_webhook_writes_parses_with_the_contract_defaults() {
        let argv = [
            contract::SIDECAR_BINARY.to_string(),
            flag(contract::FLAG_CREDENTIAL),
            "billing".into(),
            flag(contract::FLAG_CREDENTIAL),
            "alerts".into(),
            flag(contract::FLAG_NAMESPACE),
            "shop".into(),
        ];
        let args = Args::try_parse_from(argv).expect("the webhook's argv parses");
        assert_eq!(args.credentials, ["billing", "alerts"]);
        assert_eq!(args.namespace.as_deref(), Some("shop"));
        assert_eq!(args.smtp_listen.to_string(), contract::DEFAULT_SMTP_LISTEN);
        assert_eq!(args.imap_listen.to_string(), contract::DEFAULT_IMAP_LISTEN);
        assert_eq!(
            args.admin_listen.to_string(),
            contract::DEFAULT_ADMIN_LISTEN
        );
        assert_eq!(args.cache_ttl_seconds, contract::DEFAULT_CACHE_TTL_SECONDS);
        assert_eq!(args.account_set, None);
    }

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("mailcred-sidecar").chain(argv.iter().copied()))
    }

    #[test]
    fn account_set_flags_parse_with_the_contract_names_and_defaults() {
        let args = parse(&[
            &flag(contract::FLAG_ACCOUNT_SET),
            "crm",
            &flag(contract::FLAG_WRITE_APP_TOKEN),
            contract::APP_TOKEN_PATH,
            &flag(contract::FLAG_ACCOUNT_CACHE_SIZE),
            "5000",
        ])
        .expect("the account-set argv parses");
        assert_eq!(args.account_set.as_deref(), Some("crm"));
        assert_eq!(args.account_cache_size, 5000);
        assert_eq!(
            parse(&["--account-set", "crm"]).unwrap().account_cache_size,
            contract::DEFAULT_ACCOUNT_CACHE_SIZE
        );
    }

    #[test]
    fn account_set_conflicts_with_single_credentials_and_bounds_the_cache() {
        let cases: [&[&str]; 5] = [
            &["--account-set", "crm", "--credential", "mail"],
            &["--account-set", "crm", "--credential-file", "/c.yaml"],
            &["--account-set", "crm", "--smtp-token-file", "/t"],
            &[
                "--account-set",
                "crm",
                "--app-token-file",
                "/a",
                "--write-app-token",
                "/b",
            ],
            &["--account-set", "crm", "--account-cache-size", "0"],
        ];
        for argv in cases {
            assert!(parse(argv).is_err(), "{argv:?} parsed");
        }
        let ok = parse(&["--account-set", "crm", "--account-cache-size", "2"]).unwrap();
        assert_eq!(ok.account_cache_size, 2);
    }
}
