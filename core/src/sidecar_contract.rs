//! What the operator's webhook writes into the injected sidecar container and the sidecar
//! reads: environment names, flag names, default addresses, the probe. Both sides use these
//! constants, so a renamed flag or variable cannot leave the other side silently behind
//! (the sidecar's clap arguments name them: `sidecar/src/cli.rs`).

// ---- environment of the sidecar container --------------------------------------------

/// Pod name (downward API `metadata.name`), for audit lines.
pub const ENV_POD_NAME: &str = "POD_NAME";
/// Pod namespace (downward API `metadata.namespace`): where the credentials live.
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";
/// The pod's ServiceAccount (downward API `spec.serviceAccountName`): the sidecar refuses a
/// credential whose `spec.access.serviceAccounts` does not list it.
pub const ENV_SERVICE_ACCOUNT: &str = "MAILCRED_SERVICE_ACCOUNT";
/// MailCredential names, comma-separated (the webhook passes [`FLAG_CREDENTIAL`] instead).
pub const ENV_CREDENTIALS: &str = "MAILCRED_CREDENTIALS";
/// Which credential SMTP uses when several are named.
pub const ENV_SMTP_CREDENTIAL: &str = "MAILCRED_SMTP_CREDENTIAL";
/// Which credential IMAP uses when several are named.
pub const ENV_IMAP_CREDENTIAL: &str = "MAILCRED_IMAP_CREDENTIAL";
/// A MailCredential file instead of the API (single machine, tests).
pub const ENV_CREDENTIAL_FILE: &str = "MAILCRED_CREDENTIAL_FILE";
/// Loopback SMTP listener for the application.
pub const ENV_SMTP_LISTEN: &str = "MAILCRED_SMTP_LISTEN";
/// Loopback IMAP listener for the application.
pub const ENV_IMAP_LISTEN: &str = "MAILCRED_IMAP_LISTEN";
/// Loopback health and metrics listener.
pub const ENV_ADMIN_LISTEN: &str = "MAILCRED_ADMIN_LISTEN";
/// Pod-IP listener serving only `/metrics` (unset: no such listener). The one listener that
/// may be non-loopback: it carries counters, never a credential or a name of one.
pub const ENV_METRICS_LISTEN: &str = "MAILCRED_METRICS_LISTEN";
/// Seconds a decrypted password stays cached.
pub const ENV_CACHE_TTL_SECONDS: &str = "MAILCRED_CACHE_TTL_SECONDS";
/// KMS endpoints a sealed secret may name, comma-separated.
pub const ENV_TRUSTED_KMS_ENDPOINTS: &str = "MAILCRED_TRUSTED_KMS_ENDPOINTS";
/// Key file of the local KMS provider.
pub const ENV_LOCAL_KEY_FILE: &str = "MAILCRED_LOCAL_KEY_FILE";
/// Any value: no AWS KMS provider.
pub const ENV_NO_AWS: &str = "MAILCRED_NO_AWS";
/// Token the application presents with SMTP AUTH.
pub const ENV_SMTP_TOKEN_FILE: &str = "MAILCRED_SMTP_TOKEN_FILE";
/// Token the application presents with IMAP LOGIN.
pub const ENV_IMAP_TOKEN_FILE: &str = "MAILCRED_IMAP_TOKEN_FILE";

/// Account-set mode (docs/accounts.md): the set's name; the sidecar serves every
/// MailCredential labelled `mailcred.io/account-set=<set>` and the app picks one per connection.
pub const ENV_ACCOUNT_SET: &str = "MAILCRED_ACCOUNT_SET";
/// The app's local token, one for SMTP AUTH, IMAP LOGIN and the registration API (required in
/// account-set mode). The sidecar reads it from this file (see also [`FLAG_WRITE_APP_TOKEN`]).
pub const ENV_APP_TOKEN_FILE: &str = "MAILCRED_APP_TOKEN_FILE";
/// Loopback listener of the registration API (account-set mode only).
pub const ENV_REGISTRATION_LISTEN: &str = "MAILCRED_REGISTRATION_LISTEN";
/// KMS key the registration API seals new accounts with (GenerateDataKey: encrypt only).
pub const ENV_SEAL_KMS_KEY: &str = "MAILCRED_SEAL_KMS_KEY";
/// Most decrypted account plaintexts held at once (least recently used evicted first).
pub const ENV_ACCOUNT_CACHE_SIZE: &str = "MAILCRED_ACCOUNT_CACHE_SIZE";

/// The variables the webhook sets on the sidecar itself: extra env given to the operator
/// (`--sidecar-env`) may not override them.
pub const RESERVED_ENV: &[&str] = &[
    ENV_POD_NAME,
    ENV_POD_NAMESPACE,
    ENV_SERVICE_ACCOUNT,
    ENV_SMTP_LISTEN,
    ENV_IMAP_LISTEN,
    ENV_ADMIN_LISTEN,
    ENV_METRICS_LISTEN,
    ENV_CACHE_TTL_SECONDS,
    ENV_TRUSTED_KMS_ENDPOINTS,
    ENV_CREDENTIALS,
    ENV_ACCOUNT_SET,
    ENV_APP_TOKEN_FILE,
    ENV_REGISTRATION_LISTEN,
];

// ---- environment of the application containers ---------------------------------------

/// `smtp://ADDR` of the sidecar's SMTP listener.
pub const ENV_APP_SMTP_URL: &str = "MAILCRED_SMTP_URL";
/// `imap://ADDR` of the sidecar's IMAP listener.
pub const ENV_APP_IMAP_URL: &str = "MAILCRED_IMAP_URL";
/// `http://ADDR` of the registration API (account-set mode).
pub const ENV_APP_REGISTRATION_URL: &str = "MAILCRED_REGISTRATION_URL";
// The app containers get [`ENV_APP_TOKEN_FILE`] too, pointing at [`APP_TOKEN_PATH`].

// ---- flags (long names, without the leading `--`) -------------------------------------

/// A MailCredential name; repeated for several.
pub const FLAG_CREDENTIAL: &str = "credential";
/// The credentials' namespace (the webhook passes `$(POD_NAMESPACE)`).
pub const FLAG_NAMESPACE: &str = "namespace";
/// The pod's ServiceAccount, when not from [`ENV_SERVICE_ACCOUNT`].
pub const FLAG_SERVICE_ACCOUNT: &str = "service-account";
pub const FLAG_SMTP_LISTEN: &str = "smtp-listen";
pub const FLAG_IMAP_LISTEN: &str = "imap-listen";
pub const FLAG_ADMIN_LISTEN: &str = "admin-listen";
pub const FLAG_METRICS_LISTEN: &str = "metrics-listen";
pub const FLAG_CACHE_TTL_SECONDS: &str = "cache-ttl-seconds";
pub const FLAG_TRUSTED_KMS_ENDPOINTS: &str = "trusted-kms-endpoints";
pub const FLAG_ACCOUNT_SET: &str = "account-set";
pub const FLAG_APP_TOKEN_FILE: &str = "app-token-file";
/// The sidecar makes a fresh random app token at start and writes it to this path (the shared
/// in-memory volume the webhook mounts read-only into the app containers), mode 0440.
pub const FLAG_WRITE_APP_TOKEN: &str = "write-app-token";
pub const FLAG_REGISTRATION_LISTEN: &str = "registration-listen";
pub const FLAG_SEAL_KMS_KEY: &str = "seal-kms-key";
pub const FLAG_ACCOUNT_CACHE_SIZE: &str = "account-cache-size";

/// `--NAME` as it appears in argv.
pub fn flag(long: &str) -> String {
    format!("--{long}")
}

/// `$(NAME)`: a reference the kubelet expands from the container's env in argv.
pub fn env_reference(name: &str) -> String {
    format!("$({name})")
}

// ---- defaults ---------------------------------------------------------------------------

pub const DEFAULT_SMTP_LISTEN: &str = "127.0.0.1:2525";
pub const DEFAULT_IMAP_LISTEN: &str = "127.0.0.1:1143";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:15090";
pub const DEFAULT_REGISTRATION_LISTEN: &str = "127.0.0.1:15093";
pub const DEFAULT_ACCOUNT_CACHE_SIZE: usize = 1000;
/// The in-memory volume (emptyDir, medium Memory) holding the app token, as mounted in the
/// sidecar (read-write) and the app containers (read-only).
pub const APP_TOKEN_VOLUME: &str = "mailcred-app-token";
pub const APP_TOKEN_MOUNT_PATH: &str = "/var/run/mailcred";
pub const APP_TOKEN_PATH: &str = "/var/run/mailcred/app-token";
/// Port of the scrapeable metrics listener when the chart enables it (next to the admin port).
pub const DEFAULT_METRICS_PORT: u16 = 15091;
/// Name of the injected container port of the metrics listener (what a PodMonitor selects;
/// a port name has at most 15 characters).
pub const METRICS_PORT_NAME: &str = "mailcred-prom";
/// Label the webhook puts on pods whose sidecar serves the metrics port (the PodMonitor's
/// selector), value `"true"`.
pub const METRICS_POD_LABEL: &str = "mailcred.io/sidecar-metrics";
/// Path of the metrics on both the admin and the metrics listener.
pub const METRICS_PATH: &str = "/metrics";
pub const DEFAULT_CACHE_TTL_SECONDS: u64 = 900;

// ---- probes -----------------------------------------------------------------------------

/// Name of the injected container and of the binary in the image.
pub const SIDECAR_BINARY: &str = "mailcred-sidecar";
/// `mailcred-sidecar probe --url URL`: the exec probe (the admin listener is loopback-only,
/// which kubelet's httpGet cannot reach).
pub const PROBE_SUBCOMMAND: &str = "probe";
pub const PROBE_URL_FLAG: &str = "url";
pub const READY_PATH: &str = "/readyz";
pub const HEALTH_PATH: &str = "/healthz";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_addresses() {
        for addr in [
            DEFAULT_SMTP_LISTEN,
            DEFAULT_IMAP_LISTEN,
            DEFAULT_ADMIN_LISTEN,
            DEFAULT_REGISTRATION_LISTEN,
        ] {
            let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
            assert!(addr.ip().is_loopback(), "{addr}");
        }
    }

    #[test]
    fn reserved_env_are_mailcred_or_downward_api_names() {
        for name in RESERVED_ENV {
            assert!(
                name.starts_with("MAILCRED_") || name.starts_with("POD_"),
                "{name}"
            );
        }
        assert_eq!(flag(FLAG_CREDENTIAL), "--credential");
        assert_eq!(env_reference(ENV_POD_NAMESPACE), "$(POD_NAMESPACE)");
    }
}
