//! `seal` for OAuth grants: the `--oauth-*` flags become `spec.oauth`, checked with the same
//! rules as the operator's before any secret is read; the grant's secret comes only from stdin
//! or files (never argv). A Google service-account JSON key is accepted as downloaded.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use mailcred_core::crd::{ClientAuthMethod, OAuthGrantKind, OAuthProvider, OAuthSpec};
use mailcred_core::grant::GrantFields;
use mailcred_core::{GrantSecret, SaslMechanism, oauth_rules};
use secrecy::SecretString;
use zeroize::Zeroizing;

/// Longest secret file or stdin read (a Google JSON key is ~2.4 KiB).
const MAX_SECRET_INPUT_BYTES: u64 = 64 * 1024;

#[derive(Args, Debug, Default)]
pub struct OAuthArgs {
    /// Authenticate upstream with OAuth 2.0: microsoft | google | generic (instead of a password).
    #[arg(long, value_name = "PROVIDER")]
    pub oauth_provider: Option<String>,
    /// Entra tenant id or domain (microsoft).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Token endpoint URL (generic; presets derive it).
    #[arg(long, value_name = "URL")]
    pub token_endpoint: Option<String>,
    /// OAuth client (application) id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// refreshToken | clientCredentials | serviceAccount.
    #[arg(long)]
    pub grant: Option<String>,
    /// none | clientSecretPost | clientSecretBasic | privateKeyJwt (default: the grant's).
    #[arg(long)]
    pub client_auth: Option<String>,
    /// Scope to request (repeatable; default: the preset's).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// XOAUTH2 (default) | OAUTHBEARER.
    #[arg(long)]
    pub mechanism: Option<String>,
    /// Mailbox a serviceAccount grant acts for (default: --username).
    #[arg(long)]
    pub subject: Option<String>,
    /// Key id of the signing key (JWT kid).
    #[arg(long)]
    pub key_id: Option<String>,
    /// base64url SHA-1 thumbprint of the certificate (Microsoft certificate credentials).
    #[arg(long)]
    pub certificate_thumbprint: Option<String>,
    /// PEM CA bundle for the token endpoint (instead of system roots).
    #[arg(long, value_name = "FILE")]
    pub oauth_ca_file: Option<PathBuf>,
    /// Allow an http:// token endpoint; requires a reason. Tests only.
    #[arg(long, value_name = "REASON")]
    pub oauth_insecure_reason: Option<String>,
    /// Read the client secret from standard input.
    #[arg(long)]
    pub client_secret_stdin: bool,
    /// Read the client secret from FILE.
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// Read the refresh token from standard input.
    #[arg(long)]
    pub refresh_token_stdin: bool,
    /// PKCS#8 PEM RSA private key (privateKeyJwt).
    #[arg(long, value_name = "FILE")]
    pub private_key_file: Option<PathBuf>,
    /// Google service-account JSON key, as downloaded (serviceAccount).
    #[arg(long, value_name = "FILE")]
    pub service_account_key_file: Option<PathBuf>,
}

impl OAuthArgs {
    pub fn requested(&self) -> bool {
        self.oauth_provider.is_some()
    }
}

fn pick<T: Copy>(flag: &str, value: &str, options: &[(&str, T)]) -> anyhow::Result<T> {
    options
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            anyhow::anyhow!("{flag} {value:?}: expected one of {}", names.join(", "))
        })
}

/// Builds `spec.oauth` from the flags and checks it and the secret sources, reading nothing
/// secret. `password_stdin` says whether the password flag was given too (a conflict).
pub fn spec_from_args(args: &OAuthArgs, password_stdin: bool) -> anyhow::Result<OAuthSpec> {
    spec_checked(args, password_stdin, RefreshToken::Stdin)
}

/// Where a refreshToken grant's token comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RefreshToken {
    /// `seal --refresh-token-stdin`.
    Stdin,
    /// `authorize`: the token endpoint issues it; the flag is refused.
    Authorized,
}

/// [`spec_from_args`] for either source of the refresh token.
pub fn spec_checked(
    args: &OAuthArgs,
    password_stdin: bool,
    refresh: RefreshToken,
) -> anyhow::Result<OAuthSpec> {
    let Some(provider) = &args.oauth_provider else {
        bail!("--oauth-provider is required for an OAuth credential");
    };
    if password_stdin {
        bail!(
            "--password-stdin and --oauth-provider exclude each other: an OAuth credential seals the grant's secret, not a password"
        );
    }
    let provider = pick(
        "--oauth-provider",
        provider,
        &[
            ("microsoft", OAuthProvider::Microsoft),
            ("google", OAuthProvider::Google),
            ("generic", OAuthProvider::Generic),
        ],
    )?;
    let grant = pick(
        "--grant",
        args.grant.as_deref().unwrap_or(""),
        &[
            ("refreshToken", OAuthGrantKind::RefreshToken),
            ("clientCredentials", OAuthGrantKind::ClientCredentials),
            ("serviceAccount", OAuthGrantKind::ServiceAccount),
        ],
    )?;
    let client_auth = args
        .client_auth
        .as_deref()
        .map(|v| {
            pick(
                "--client-auth",
                v,
                &[
                    ("none", ClientAuthMethod::None),
                    ("clientSecretPost", ClientAuthMethod::ClientSecretPost),
                    ("clientSecretBasic", ClientAuthMethod::ClientSecretBasic),
                    ("privateKeyJwt", ClientAuthMethod::PrivateKeyJwt),
                ],
            )
        })
        .transpose()?;
    let mechanism = args
        .mechanism
        .as_deref()
        .map(|v| {
            pick(
                "--mechanism",
                v,
                &[
                    ("XOAUTH2", SaslMechanism::Xoauth2),
                    ("OAUTHBEARER", SaslMechanism::Oauthbearer),
                ],
            )
        })
        .transpose()?
        .unwrap_or_default();
    let json_key = args.service_account_key_file.is_some();
    if args.client_id.is_none() && !json_key {
        bail!(
            "--client-id is required (or --service-account-key-file, whose client_email is used)"
        );
    }
    let ca_pem = match &args.oauth_ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--oauth-ca-file: cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let insecure = args.oauth_insecure_reason.is_some();
    let spec = OAuthSpec {
        provider,
        tenant: args.tenant.clone(),
        token_endpoint: args.token_endpoint.clone(),
        // Filled from the JSON key later when only the key file is given.
        client_id: args
            .client_id
            .clone()
            .unwrap_or_else(|| "from-key-file".into()),
        grant,
        client_auth,
        scopes: args.scopes.clone(),
        mechanism,
        subject: args.subject.clone(),
        key_id: args.key_id.clone(),
        certificate_thumbprint: args.certificate_thumbprint.clone(),
        ca_pem,
        insecure,
        insecure_reason: args.oauth_insecure_reason.clone(),
    };
    let problems = oauth_rules::check(&spec);
    if !problems.is_empty() {
        let text: Vec<String> = problems.into_iter().map(|p| p.message).collect();
        bail!("{}", text.join("; ").replace("spec.oauth.", "--oauth "));
    }
    check_sources(args, &spec, refresh)?;
    Ok(spec)
}

/// Exactly the secret sources the grant needs, at most one reading stdin, files present.
pub(crate) fn check_sources(
    args: &OAuthArgs,
    spec: &OAuthSpec,
    refresh: RefreshToken,
) -> anyhow::Result<()> {
    let need = GrantFields::for_spec(spec);
    if refresh == RefreshToken::Authorized && args.refresh_token_stdin {
        bail!(
            "authorize obtains the refresh token itself; leave out --refresh-token-stdin (or use `seal` for a token you already have)"
        );
    }
    let refresh_given = args.refresh_token_stdin || refresh == RefreshToken::Authorized;
    let secret_given = args.client_secret_stdin || args.client_secret_file.is_some();
    let key_given = args.private_key_file.is_some() || args.service_account_key_file.is_some();
    if args.client_secret_stdin && args.client_secret_file.is_some() {
        bail!("give the client secret once: --client-secret-stdin or --client-secret-file");
    }
    if args.private_key_file.is_some() && args.service_account_key_file.is_some() {
        bail!("give the key once: --private-key-file or --service-account-key-file");
    }
    if args.client_secret_stdin && args.refresh_token_stdin {
        bail!(
            "--client-secret-stdin and --refresh-token-stdin both read standard input; put the client secret in a file (--client-secret-file)"
        );
    }
    if args.service_account_key_file.is_some() && spec.grant != OAuthGrantKind::ServiceAccount {
        bail!(
            "--service-account-key-file is for --grant serviceAccount; for privateKeyJwt give the PEM with --private-key-file"
        );
    }
    let grant = spec.grant.as_str();
    let auth = spec.effective_client_auth().as_str();
    for (needed, given, what) in [
        (
            need.refresh_token,
            refresh_given,
            "a refresh token (--refresh-token-stdin, or use `kubectl mailcred authorize`)",
        ),
        (
            need.client_secret,
            secret_given,
            "a client secret (--client-secret-stdin or --client-secret-file)",
        ),
        (
            need.private_key_pem,
            key_given,
            "a private key (--private-key-file, or --service-account-key-file for Google)",
        ),
    ] {
        if needed && !given {
            bail!("--grant {grant} with client auth {auth} needs {what}");
        }
        if !needed && given {
            bail!("--grant {grant} with client auth {auth} does not use {what}; leave it out");
        }
    }
    for path in [
        &args.client_secret_file,
        &args.private_key_file,
        &args.service_account_key_file,
    ]
    .into_iter()
    .flatten()
    {
        if !path.is_file() {
            bail!("{} does not exist or is not a file", path.display());
        }
    }
    Ok(())
}

/// Reads the secrets (after [`spec_from_args`]); the service-account key may complete `spec`.
pub fn read_grant(args: &OAuthArgs, spec: &mut OAuthSpec) -> anyhow::Result<GrantSecret> {
    let secret = read_sources(args, spec)?;
    mailcred_core::grant::validate(spec, &secret)?;
    Ok(secret)
}

/// The secrets the flags name, unchecked against the grant (`authorize` adds the refresh
/// token before it validates).
pub fn read_sources(args: &OAuthArgs, spec: &mut OAuthSpec) -> anyhow::Result<GrantSecret> {
    let mut secret = GrantSecret::default();
    if args.refresh_token_stdin {
        secret.refresh_token = Some(to_secret(read_stdin("the refresh token")?));
    }
    if args.client_secret_stdin {
        secret.client_secret = Some(to_secret(read_stdin("the client secret")?));
    }
    if let Some(path) = &args.client_secret_file {
        secret.client_secret = Some(to_secret(read_file(path)?));
    }
    if let Some(path) = &args.private_key_file {
        secret.private_key_pem = Some(to_secret(read_file(path)?));
    }
    if let Some(path) = &args.service_account_key_file {
        secret.private_key_pem = Some(service_account_key(path, spec, args)?);
    }
    Ok(secret)
}

#[derive(serde::Deserialize)]
struct GoogleKey {
    #[serde(rename = "type")]
    kind: String,
    private_key: String,
    private_key_id: Option<String>,
    client_email: Option<String>,
    token_uri: Option<String>,
}

/// Google's downloaded key: `private_key` is sealed; `private_key_id` → keyId,
/// `client_email` → clientId, `token_uri` → tokenEndpoint only when it differs from the preset.
fn service_account_key(
    path: &Path,
    spec: &mut OAuthSpec,
    args: &OAuthArgs,
) -> anyhow::Result<SecretString> {
    let text = read_file(path)?;
    let key: GoogleKey = serde_json::from_str(&text).map_err(|_| {
        anyhow::anyhow!("{} is not a Google service-account JSON key (download it from IAM → Service accounts → Keys → Add key → JSON)", path.display())
    })?;
    let private_key = Zeroizing::new(key.private_key);
    if key.kind != "service_account" {
        bail!(
            "{}: \"type\" is {:?}, expected \"service_account\"",
            path.display(),
            key.kind
        );
    }
    if args.key_id.is_none() {
        spec.key_id = key.private_key_id;
    }
    match (&args.client_id, key.client_email) {
        (None, Some(email)) => spec.client_id = email,
        (None, None) => bail!("{} has no client_email; give --client-id", path.display()),
        (Some(_), _) => {}
    }
    if args.token_endpoint.is_none()
        && let Some(uri) = key.token_uri
        && spec.provider == OAuthProvider::Google
        && uri != mailcred_core::crd::GOOGLE_TOKEN_ENDPOINT
    {
        spec.token_endpoint = Some(uri);
    }
    Ok(SecretString::from(private_key.as_str()))
}

fn to_secret(text: Zeroizing<String>) -> SecretString {
    SecretString::from(text.as_str())
}

fn read_file(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    read_bounded(file, &path.display().to_string())
}

fn read_stdin(what: &str) -> anyhow::Result<Zeroizing<String>> {
    read_bounded(std::io::stdin(), &format!("{what} on standard input"))
}

fn read_bounded(reader: impl Read, what: &str) -> anyhow::Result<Zeroizing<String>> {
    let mut buf = Zeroizing::new(Vec::new());
    reader
        .take(MAX_SECRET_INPUT_BYTES + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {what}"))?;
    if buf.len() as u64 > MAX_SECRET_INPUT_BYTES {
        bail!("{what} is over {MAX_SECRET_INPUT_BYTES} bytes");
    }
    let text = std::str::from_utf8(&buf).map_err(|_| anyhow::anyhow!("{what} is not UTF-8"))?;
    // One trailing line ending is what files and `echo` add; PEM keeps its own lines.
    let trimmed = if text.contains("-----BEGIN") {
        text
    } else {
        text.strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text)
    };
    if trimmed.is_empty() {
        bail!("{what} is empty");
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}
