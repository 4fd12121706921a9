//! `authorize`: runs an OAuth 2.0 grant in which a person signs in (RFC 8628 device
//! authorization, or RFC 6749 authorization code with PKCE S256 and an RFC 8252 loopback
//! redirect) and seals the refresh token it yields straight into the MailCredential. The token
//! is never printed, written or logged; it lives in zeroizing types until it is sealed.
//! Every flag is checked, as `seal` checks them, before the first request.

mod device;
mod endpoints;
mod pkce;
mod token;

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use mailcred_core::crd::{MailCredential, OAuthGrantKind};
use mailcred_core::{CredentialBinding, envelope};

use crate::cli::SealArgs;
use crate::seal_oauth::{self, RefreshToken};
use crate::{kubeconfig, seal, validate};

/// Longest sign-in wait `--timeout` allows (device codes live 15 min at Microsoft and Google).
const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Args, Debug)]
pub struct AuthorizeArgs {
    /// device (RFC 8628: a code to type on another device) | code (authorization code + PKCE
    /// with a loopback redirect on this machine; Google needs it for the Gmail scope).
    #[arg(long, value_name = "device|code")]
    pub flow: String,
    /// Device authorization endpoint (generic; presets derive it).
    #[arg(long, value_name = "URL")]
    pub device_endpoint: Option<String>,
    /// Authorization endpoint (generic; presets derive it).
    #[arg(long, value_name = "URL")]
    pub authorization_endpoint: Option<String>,
    /// How long to wait for the sign-in, e.g. 90s, 10m (at most 30m).
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub timeout: String,
    /// The credential's fields, as for `seal` (--grant defaults to refreshToken).
    #[command(flatten)]
    pub seal: SealArgs,
}

/// Which grant the person completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Device,
    Code,
}

fn parse_flow(value: &str) -> anyhow::Result<Flow> {
    match value {
        "device" => Ok(Flow::Device),
        "code" => Ok(Flow::Code),
        other => bail!("--flow {other:?}: expected device or code"),
    }
}

pub fn parse_timeout(text: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow::anyhow!("--timeout {text:?}: expected a number and s or m (e.g. 10m)");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let d = match unit {
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(bad()),
    };
    if d.is_zero() || d > MAX_TIMEOUT {
        bail!("--timeout {text:?}: must be between 1s and 30m");
    }
    Ok(d)
}

pub async fn run(mut args: AuthorizeArgs) -> anyhow::Result<()> {
    // Everything that can be wrong with the flags is found before the first request.
    let flow = parse_flow(&args.flow)?;
    let timeout = parse_timeout(&args.timeout)?;
    let s = &mut args.seal;
    if s.password.is_some() || s.password_stdin {
        bail!("authorize seals an OAuth refresh token, not a password: leave out --password-stdin");
    }
    if !s.oauth.requested() {
        bail!("authorize needs --oauth-provider (microsoft, google or generic) and --client-id");
    }
    match s.oauth.grant.as_deref() {
        None => s.oauth.grant = Some(OAuthGrantKind::RefreshToken.as_str().to_string()),
        Some(g) if g == OAuthGrantKind::RefreshToken.as_str() => {}
        Some(other) => bail!(
            "--grant {other:?}: authorize yields a refresh token (refreshToken); seal a {other} grant with `kubectl mailcred seal`"
        ),
    }
    let format = validate::output_format(s.output.as_deref())?;
    if let Some(path) = &s.write {
        validate::write_target(path)?;
    }
    let namespace = match &s.namespace {
        Some(namespace) => namespace.clone(),
        None => kubeconfig::namespace(kubeconfig::path_from_env().as_deref())?,
    };
    let required = validate::required(s, "")?;
    let name = required.name.to_owned();
    validate::names(&name, &namespace, required.username)?;
    let kms = seal::parse_kms(required.kms)?;
    validate::kms(&kms, s)?;
    let mut spec = seal::build_spec(s)?.0;
    let mut oauth = seal_oauth::spec_checked(&s.oauth, false, RefreshToken::Authorized)?;
    spec.oauth = Some(oauth.clone());
    CredentialBinding::new(&namespace, &name, &spec)?;
    let endpoints = endpoints::Endpoints::resolve(
        flow,
        &oauth,
        args.device_endpoint.as_deref(),
        args.authorization_endpoint.as_deref(),
    )?;
    let sealer = seal::build_sealer(kms, s).await?;
    let mut secret = seal_oauth::read_sources(&s.oauth, &mut oauth)?;
    let client = token::Client::new(&oauth, &secret, endpoints.token.clone())?;

    let refresh_token = match flow {
        Flow::Device => device::run(&client, &endpoints, timeout).await?,
        Flow::Code => pkce::run(&client, &oauth, &endpoints, timeout).await?,
    };
    secret.refresh_token = Some(refresh_token);
    mailcred_core::grant::validate(&oauth, &secret)?;
    spec.oauth = Some(oauth.clone());
    let binding = CredentialBinding::new(&namespace, &name, &spec)?;
    let sealed = envelope::seal_grant(sealer.as_ref(), &binding, &oauth, &secret)
        .await
        .context("sealing failed")?;
    drop(secret);
    spec.sealed_secret = Some(sealed);
    let mut resource = MailCredential::new(&name, spec);
    resource.metadata.namespace = Some(namespace);
    let text = seal::render(&resource, format)?;
    match &s.write {
        Some(path) => seal::write_file(path, &text)?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .context("cannot write to standard output")?,
    }
    eprintln!("signed in; the refresh token is sealed into the MailCredential (it was not shown)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_within_bounds() {
        assert_eq!(parse_timeout("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_timeout("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_timeout("30m").unwrap(), MAX_TIMEOUT);
        for bad in [
            "",
            "0s",
            "31m",
            "2h",
            "m",
            "-1s",
            "1.5m",
            "99999999999999999999m",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flows_parse() {
        assert_eq!(parse_flow("device").unwrap(), Flow::Device);
        assert_eq!(parse_flow("code").unwrap(), Flow::Code);
        let err = parse_flow("implicit").unwrap_err().to_string();
        assert!(err.contains("expected device or code"), "{err}");
    }
}
