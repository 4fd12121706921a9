//! The registration API's flags; the lead flattens [`RegistrationArgs`] into `cli::Args`
//! (`#[command(flatten)]`). The app token, namespace, ServiceAccount, account set, local key
//! file and trusted KMS endpoints are the sidecar's own flags and are passed in.

use std::net::SocketAddr;
use std::path::PathBuf;

use mailcred_core::sidecar_contract as contract;

#[derive(clap::Args, Debug, Clone)]
pub struct RegistrationArgs {
    /// Loopback listener of the registration API (account-set mode only).
    #[arg(
        long = contract::FLAG_REGISTRATION_LISTEN,
        env = contract::ENV_REGISTRATION_LISTEN,
        default_value = contract::DEFAULT_REGISTRATION_LISTEN
    )]
    pub registration_listen: SocketAddr,

    /// KMS key (ARN) new accounts are sealed with: GenerateDataKey, which encrypts only. With
    /// --seal-public-key-file, the key whose public half that file is (nothing is called).
    #[arg(long = contract::FLAG_SEAL_KMS_KEY, env = contract::ENV_SEAL_KMS_KEY)]
    pub seal_kms_key: Option<String>,

    /// The KMS key's region (default: from the ARN).
    #[arg(long)]
    pub seal_kms_region: Option<String>,

    /// KMS endpoint for GenerateDataKey, recorded in each sealed secret; must be one of
    /// --trusted-kms-endpoints (default: the AWS environment's).
    #[arg(long)]
    pub seal_kms_endpoint: Option<String>,

    /// Offline sealing: the RSA public key (PEM, from KMS GetPublicKey) of --seal-kms-key.
    #[arg(long, requires = "seal_kms_key")]
    pub seal_public_key_file: Option<PathBuf>,

    /// Registration requests handled at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 8)]
    pub registration_max_in_flight: usize,

    /// Bound on one API request, login check and sealing included (seconds).
    #[arg(long, default_value_t = 30)]
    pub registration_timeout_seconds: u64,

    /// Bound on each step of the upstream login check (seconds).
    #[arg(long, default_value_t = 10)]
    pub registration_login_timeout_seconds: u64,
}
