//! Command-line flags. The Helm chart sets them; every default is what the chart assumes.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, ValueEnum};
use mailcred_core::sidecar_contract as contract;

#[derive(Parser, Clone, Debug)]
#[command(
    name = "mailcred-operator",
    version,
    about = "Validates MailCredentials, keeps their RBAC and injects the mailcred sidecar"
)]
pub struct Config {
    /// Namespace the operator runs in (its Lease, webhook Secret and Service live there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "mailcred-system")]
    pub namespace: String,

    /// This replica's name: the Lease holder identity and the Events' reporting instance.
    #[arg(long, env = "POD_NAME", default_value = "mailcred-operator")]
    pub pod_name: String,

    /// Log format: `json` (one object per line) or `text`.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log level or `tracing` filter directives (`debug`, `info,mailcred_operator=debug`).
    /// The kube client stays at `warn` unless the directives name `kube` themselves.
    /// RUST_LOG, when set, takes precedence.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Plain-HTTP listener for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Seconds to finish in-flight work after SIGTERM before exiting.
    #[arg(long, default_value_t = 20)]
    pub shutdown_grace_seconds: u64,

    #[command(flatten)]
    pub controller: ControllerArgs,

    #[command(flatten)]
    pub webhook: WebhookArgs,

    #[command(flatten)]
    pub sidecar: SidecarArgs,
}

#[derive(Args, Clone, Debug)]
pub struct ControllerArgs {
    /// Do not run the controller in this process (webhook only).
    #[arg(long)]
    pub disable_controller: bool,

    /// Run the controller only while holding the Lease (set false for a single replica).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Name of the coordination.k8s.io Lease in --namespace.
    #[arg(long, default_value = "mailcred-operator")]
    pub lease_name: String,

    /// Seconds a Lease is held without renewal before another replica may take it.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// Re-check every credential this often even without changes (seconds). Changes to a
    /// credential or its Role/RoleBinding trigger at once; this only bounds missed events.
    /// Each pass costs two no-op applies per credential.
    #[arg(long, default_value_t = 3600)]
    pub resync_seconds: u64,

    /// A KMS key id, key ARN or local key fingerprint that must no longer be sealed to
    /// (repeatable). Credentials sealed with it get the KeyRetired condition, a Warning Event
    /// and `mailcred_credential_key_retired 1`; they keep working.
    #[arg(long = "retired-kms-key", value_name = "KEY")]
    pub retired_kms_keys: Vec<String>,
}

#[derive(Args, Clone, Debug)]
pub struct WebhookArgs {
    /// Do not serve the admission webhook in this process.
    #[arg(long)]
    pub disable_webhook: bool,

    /// HTTPS listener of the admission webhook (path /mutate).
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub webhook_addr: SocketAddr,

    /// `self-signed`: the operator makes its CA and serving certificate, keeps them in
    /// --webhook-tls-secret and patches caBundle. `files`: certificates are mounted (cert-manager).
    #[arg(long, value_enum, default_value_t = TlsMode::SelfSigned)]
    pub webhook_tls_mode: TlsMode,

    /// Secret (in --namespace) holding the self-signed CA and serving certificate.
    #[arg(long, default_value = "mailcred-operator-webhook-tls")]
    pub webhook_tls_secret: String,

    /// Service (in --namespace) the API server reaches the webhook through; names the certificate.
    #[arg(long, default_value = "mailcred-operator-webhook")]
    pub webhook_service: String,

    /// MutatingWebhookConfiguration whose caBundle the operator keeps current (self-signed mode).
    #[arg(long, default_value = "mailcred-operator")]
    pub webhook_config: String,

    /// Serving certificate chain (PEM) in `files` mode; re-read when it changes.
    #[arg(long, default_value = "/tls/tls.crt")]
    pub webhook_cert_file: PathBuf,

    /// Serving key (PEM) in `files` mode.
    #[arg(long, default_value = "/tls/tls.key")]
    pub webhook_key_file: PathBuf,

    /// Validity of a generated serving certificate (days).
    #[arg(long, default_value_t = 365)]
    pub webhook_cert_validity_days: u32,

    /// Validity of the generated CA (days).
    #[arg(long, default_value_t = 3650)]
    pub webhook_ca_validity_days: u32,

    /// Renew a generated certificate (or the CA) this many days before it expires.
    #[arg(long, default_value_t = 30)]
    pub webhook_renew_before_days: u32,

    /// How often certificates are checked for renewal or change (seconds).
    #[arg(long, default_value_t = 300)]
    pub webhook_cert_check_seconds: u64,

    /// What to do with a pod that asks for injection but cannot get it (unknown or forbidden
    /// credential, malformed annotation): `deny` it, or `admit` it without the sidecar and
    /// with a warning.
    #[arg(long, value_enum, default_value_t = InvalidPodPolicy::Deny)]
    pub invalid_pod_policy: InvalidPodPolicy,

    /// Longest wait for a MailCredential lookup that missed the cache (milliseconds).
    #[arg(long, default_value_t = 2000)]
    pub credential_lookup_timeout_ms: u64,
}

#[derive(Args, Clone, Debug)]
pub struct SidecarArgs {
    /// Sidecar image injected into pods.
    #[arg(long, default_value = concat!("ghcr.io/mailcred/mailcred-sidecar:", env!("CARGO_PKG_VERSION")))]
    pub sidecar_image: String,

    /// imagePullPolicy of the injected sidecar.
    #[arg(long, default_value = "IfNotPresent")]
    pub sidecar_image_pull_policy: String,

    /// `native`: an init container with restartPolicy Always (Kubernetes 1.29+, starts before
    /// and stops after the app). `container`: a regular container (older clusters).
    #[arg(long, value_enum, default_value_t = SidecarMode::Native)]
    pub sidecar_mode: SidecarMode,

    /// Loopback address the sidecar serves SMTP on; the app gets MAILCRED_SMTP_URL for it.
    #[arg(long, default_value = contract::DEFAULT_SMTP_LISTEN)]
    pub sidecar_smtp_addr: SocketAddr,

    /// Loopback address the sidecar serves IMAP on; the app gets MAILCRED_IMAP_URL for it.
    #[arg(long, default_value = contract::DEFAULT_IMAP_LISTEN)]
    pub sidecar_imap_addr: SocketAddr,

    /// Loopback address of the sidecar's admin listener (/readyz, /metrics).
    #[arg(long, default_value = contract::DEFAULT_ADMIN_LISTEN)]
    pub sidecar_admin_addr: SocketAddr,

    /// Port of the sidecar's scrapeable metrics listener on the pod IP (`0.0.0.0:PORT`,
    /// `/metrics` only, no credential). Unset: metrics stay on the loopback admin port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub sidecar_metrics_port: Option<u16>,

    /// CPU request of the sidecar.
    #[arg(long, default_value = "10m")]
    pub sidecar_cpu_request: String,

    /// Memory request of the sidecar.
    #[arg(long, default_value = "32Mi")]
    pub sidecar_memory_request: String,

    /// Memory limit of the sidecar.
    #[arg(long, default_value = "128Mi")]
    pub sidecar_memory_limit: String,

    /// UID and GID the sidecar runs as (non-root), or `unset` to leave them to the platform
    /// (OpenShift's restricted SCC assigns a UID from the namespace's range; runAsNonRoot
    /// stays true).
    #[arg(long, default_value = "65532", value_parser = parse_run_as_user)]
    pub sidecar_run_as_user: RunAsUser,

    /// Seconds a decrypted password stays in the sidecar's memory (unset: the sidecar's
    /// default). Passed as MAILCRED_CACHE_TTL_SECONDS.
    #[arg(long)]
    pub sidecar_cache_ttl_seconds: Option<u64>,

    /// KMS endpoint override the sidecar may use (repeatable). Passed as
    /// MAILCRED_TRUSTED_KMS_ENDPOINTS (comma-separated).
    #[arg(long = "sidecar-trusted-kms-endpoint", value_name = "URL")]
    pub sidecar_trusted_kms_endpoints: Vec<String>,

    /// Extra environment of the injected sidecar, `NAME=value` (repeatable), e.g.
    /// AWS_REGION=eu-west-1. Never a password: it is visible in the pod spec.
    #[arg(long = "sidecar-env", value_name = "NAME=VALUE", value_parser = parse_env_var)]
    pub sidecar_env: Vec<(String, String)>,
}

/// Env names the operator sets on the sidecar itself; `--sidecar-env` may not override them.
pub const SIDECAR_RESERVED_ENV: &[&str] = contract::RESERVED_ENV;

/// The sidecar's UID and GID, or none (`unset`): the platform assigns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAsUser(pub Option<i64>);

fn parse_run_as_user(text: &str) -> Result<RunAsUser, String> {
    if text == "unset" {
        return Ok(RunAsUser(None));
    }
    match text.parse::<i64>() {
        Ok(uid) if uid > 0 => Ok(RunAsUser(Some(uid))),
        _ => Err(format!(
            "{text:?} is not a non-root UID (a number > 0) or `unset`"
        )),
    }
}

fn parse_env_var(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=value"))?;
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!(
            "{name:?} is not an environment variable name (letters, digits, _)"
        ));
    }
    if SIDECAR_RESERVED_ENV.contains(&name) {
        return Err(format!(
            "{name} is set by the operator itself; use the matching --sidecar-* flag"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    SelfSigned,
    Files,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidPodPolicy {
    Deny,
    Admit,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SidecarMode {
    Native,
    Container,
}

impl Config {
    /// Checks what clap cannot: the sidecar must listen on loopback (docs/design.md, invariant 2).
    pub fn validate(&self) -> Result<(), crate::Error> {
        for (flag, addr) in [
            ("--sidecar-smtp-addr", self.sidecar.sidecar_smtp_addr),
            ("--sidecar-imap-addr", self.sidecar.sidecar_imap_addr),
            ("--sidecar-admin-addr", self.sidecar.sidecar_admin_addr),
        ] {
            if !addr.ip().is_loopback() {
                return Err(crate::Error::Config(format!(
                    "{flag} {addr} is not a loopback address; the sidecar serves the pod only"
                )));
            }
        }
        if let Some(port) = self.sidecar.sidecar_metrics_port {
            let taken = [
                self.sidecar.sidecar_smtp_addr,
                self.sidecar.sidecar_imap_addr,
                self.sidecar.sidecar_admin_addr,
            ];
            if let Some(addr) = taken.iter().find(|a| a.port() == port) {
                return Err(crate::Error::Config(format!(
                    "--sidecar-metrics-port {port} is the port of the sidecar's {addr}; the metrics listener binds 0.0.0.0:{port}, pick another port"
                )));
            }
        }
        let retired = &self.controller.retired_kms_keys;
        if retired.len() > crate::seal_age::MAX_RETIRED_KEYS {
            return Err(crate::Error::Config(format!(
                "--retired-kms-key given {} times; at most {}",
                retired.len(),
                crate::seal_age::MAX_RETIRED_KEYS
            )));
        }
        if let Some(bad) = retired
            .iter()
            .find(|k| k.trim().is_empty() || k.len() > 2048 || k.contains(char::is_whitespace))
        {
            return Err(crate::Error::Config(format!(
                "--retired-kms-key {bad:?}: expected a KMS key id or ARN (or a local key's sha256: fingerprint), without spaces"
            )));
        }
        if self.controller.disable_controller && self.webhook.disable_webhook {
            return Err(crate::Error::Config(
                "--disable-controller and --disable-webhook together leave nothing to run".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let c = Config::parse_from(["mailcred-operator"]);
        c.validate().unwrap();
        assert_eq!(c.sidecar.sidecar_smtp_addr.to_string(), "127.0.0.1:2525");
        assert!(c.controller.leader_elect);
    }

    #[test]
    fn sidecar_env_flags_parse_and_refuse_reserved_names() {
        let c = Config::parse_from([
            "mailcred-operator",
            "--sidecar-env=AWS_REGION=eu-west-1",
            "--sidecar-env",
            "MAILCRED_SMTP_CREDENTIAL=smtp",
            "--sidecar-trusted-kms-endpoint=http://127.0.0.1:5000",
            "--sidecar-trusted-kms-endpoint=https://kms.vpce.example",
            "--sidecar-cache-ttl-seconds=60",
        ]);
        assert_eq!(
            c.sidecar.sidecar_env,
            [
                ("AWS_REGION".to_string(), "eu-west-1".to_string()),
                ("MAILCRED_SMTP_CREDENTIAL".to_string(), "smtp".to_string())
            ]
        );
        assert_eq!(c.sidecar.sidecar_trusted_kms_endpoints.len(), 2);
        assert_eq!(c.sidecar.sidecar_cache_ttl_seconds, Some(60));
        let err =
            Config::try_parse_from(["mailcred-operator", "--sidecar-env=POD_NAME=x"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("POD_NAME is set by the operator itself"),
            "{err}"
        );
        let err = Config::try_parse_from(["mailcred-operator", "--sidecar-env=1X=y"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("is not an environment variable name"),
            "{err}"
        );
        assert!(Config::try_parse_from(["mailcred-operator", "--sidecar-env=NOVALUE"]).is_err());
    }

    #[test]
    fn retired_kms_keys_repeat_and_blank_ones_are_refused() {
        let c = Config::parse_from([
            "mailcred-operator",
            "--retired-kms-key=arn:aws:kms:us-east-1:111122223333:key/old",
            "--retired-kms-key",
            "sha256:0011",
        ]);
        c.validate().unwrap();
        assert_eq!(c.controller.retired_kms_keys.len(), 2);
        let c = Config::parse_from(["mailcred-operator", "--retired-kms-key= "]);
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("--retired-kms-key \" \": expected a KMS key id"),
            "{err}"
        );
    }

    #[test]
    fn non_loopback_sidecar_address_is_refused() {
        let c = Config::parse_from(["mailcred-operator", "--sidecar-smtp-addr", "0.0.0.0:2525"]);
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("--sidecar-smtp-addr 0.0.0.0:2525 is not a loopback"),
            "{err}"
        );
    }
}
