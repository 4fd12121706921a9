//! `request`: a pending MailCredential (no sealed secret, a seal request with the SHA-256 of a
//! fresh token) and the one-time link for the mailbox owner. Every flag is checked before the
//! token exists; the token itself is printed once, in the link, and stored nowhere.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mailcred_core::crd::{
    DataKeyWrapping, KmsKeyRef, KmsProviderKind, MailCredential, SealRequest,
};
use mailcred_core::kms::{LocalKms, RsaPublicKeySealer, local_rsa_key_id, spki_der};
use mailcred_core::link_token::{LinkToken, link_url};

use crate::cli::{KeygenArgs, RequestArgs};
use crate::seal::{KmsScheme, build_spec, parse_kms, render, write_file};
use crate::{kubeconfig, validate};

/// Default and longest lifetime of a link: short, because a link is as good as a password
/// until it is used.
pub const MAX_EXPIRES: Duration = Duration::from_secs(60 * 60);
const MIN_EXPIRES: Duration = Duration::from_secs(60);
const MAX_REQUESTED_BY: usize = 256;

/// `90s`, `10m`, `1h`, between 1 minute and [`MAX_EXPIRES`].
pub fn parse_expires(text: &str) -> anyhow::Result<Duration> {
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .ok()
        .filter(|_| digits.len() <= 6)
        .with_context(|| {
            format!("--expires {text:?}: expected a number and s, m or h (e.g. 10m)")
        })?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("--expires {text:?}: expected a number and s, m or h (e.g. 10m)"),
    };
    let d = Duration::from_secs(secs);
    if d < MIN_EXPIRES || d > MAX_EXPIRES {
        bail!(
            "--expires {text:?}: must be between 1m and 60m; a link is as good as the password until it is used"
        );
    }
    Ok(d)
}

/// The key the page will seal to: an asymmetric one, whose public half the registration
/// service is configured with.
fn key_ref(scheme: KmsScheme, args: &RequestArgs) -> anyhow::Result<KmsKeyRef> {
    match scheme {
        KmsScheme::Aws(_) => bail!(
            "--kms aws:<key>: the page seals in the browser, so it needs an asymmetric key's public half: use --kms aws-public-key:<file> --kms-key-id <ARN> (an RSA_2048/3072/4096 ENCRYPT_DECRYPT key)"
        ),
        KmsScheme::AwsPublicKey(path) => {
            let key_id = args.spec.kms_key_id.clone().context(
                "--kms aws-public-key:<file> needs --kms-key-id <key ARN>: KMS Decrypt must know which key unwraps",
            )?;
            RsaPublicKeySealer::from_file(&path, key_id.clone(), args.spec.kms_region.clone())?;
            Ok(KmsKeyRef {
                provider: KmsProviderKind::Aws,
                key_id,
                wrapping: DataKeyWrapping::RsaesOaepSha256,
                region: args.spec.kms_region.clone(),
                endpoint: args.spec.kms_endpoint.clone(),
            })
        }
        KmsScheme::Local(path) => {
            let bytes = std::fs::read(&path)
                .with_context(|| format!("--kms local:{}: cannot read it", path.display()))?;
            let key_id = if bytes.starts_with(b"-----BEGIN PUBLIC KEY-----") {
                local_rsa_key_id(&spki_der(&bytes)?)
            } else {
                let key = LocalKms::from_file(&path)?;
                if key.wrapping() != DataKeyWrapping::RsaesOaepSha256 {
                    bail!(
                        "--kms local:{}: a symmetric key file cannot be sealed to in a browser; create an RSA pair with `kubectl mailcred keygen --rsa`",
                        path.display()
                    );
                }
                key.fingerprint().to_owned()
            };
            Ok(KmsKeyRef {
                provider: KmsProviderKind::Local,
                key_id,
                wrapping: DataKeyWrapping::RsaesOaepSha256,
                region: None,
                endpoint: None,
            })
        }
    }
}

fn check_url(url: &str) -> anyhow::Result<()> {
    let rest = url.strip_prefix("https://").with_context(|| {
        format!("--url {url:?}: must be https:// (browsers give WebCrypto to secure pages only, and the link carries a token)")
    })?;
    if rest.is_empty() || url.len() > 2048 || url.contains(['#', '?', ' ']) {
        bail!("--url {url:?}: expected https://HOST[:PORT][/PATH] without query or fragment");
    }
    Ok(())
}

pub async fn run(args: RequestArgs) -> anyhow::Result<()> {
    if args.spec.password.is_some() || args.spec.password_stdin {
        bail!("request takes no password: the mailbox owner types it into the page the link opens");
    }
    let format = validate::output_format(args.spec.output.as_deref())?;
    if let Some(path) = &args.spec.write {
        validate::write_target(path)?;
    }
    let namespace = match &args.spec.namespace {
        Some(namespace) => namespace.clone(),
        None => kubeconfig::namespace(kubeconfig::path_from_env().as_deref())?,
    };
    let required = validate::required(&args.spec, "")?;
    validate::names(required.name, &namespace, required.username)?;
    let scheme = parse_kms(required.kms)?;
    let name = required.name.to_string();
    validate::kms(&scheme, &args.spec)?;
    let expires = parse_expires(&args.expires)?;
    check_url(&args.url)?;
    let requested_by = args
        .requested_by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "kubectl mailcred request".into());
    if requested_by.is_empty()
        || requested_by.len() > MAX_REQUESTED_BY
        || requested_by.chars().any(char::is_control)
    {
        bail!("--requested-by: 1 to {MAX_REQUESTED_BY} printable characters");
    }
    let mut spec = build_spec(&args.spec)?.0;
    let kms = key_ref(scheme, &args)?;
    // The binding must be formable now, or the page could never seal.
    mailcred_core::CredentialBinding::new(&namespace, &name, &spec)?;
    if let Some(path) = &args.spec.write {
        spec.sealed_secret = existing_secret(path, args.replace)?;
    }

    let token = LinkToken::generate()?;
    let expires_at = Timestamp::now()
        .checked_add(SignedDuration::from_secs(i64::try_from(expires.as_secs())?))
        .context("the clock is out of range")?;
    spec.seal_request = Some(SealRequest {
        token_sha256: token.sha256_hex(),
        expires_at: Time(expires_at),
        requested_by,
        replace: args.replace,
        kms,
        used_at: None,
    });
    let mut resource = MailCredential::new(&name, spec);
    resource.metadata.namespace = Some(namespace.clone());
    let text = render(&resource, format)?;
    let url = link_url(&args.url, &namespace, &name, &token);
    match &args.spec.write {
        Some(path) => {
            write_file(path, &text)?;
            println!("{url}");
        }
        None if args.apply => {
            apply(&resource, args.replace)?;
            println!("{url}");
        }
        None => {
            std::io::stdout()
                .write_all(text.as_bytes())
                .context("cannot write to standard output")?;
            eprintln!("{url}");
        }
    }
    eprintln!(
        "send this link to the owner of {} by a channel you trust; it works once, until {expires_at}",
        args.spec.username.as_deref().unwrap_or_default()
    );
    Ok(())
}

/// What `-w FILE` keeps of the file it replaces: nothing, unless it holds a sealed secret and
/// --replace was given (the secret stays usable until the owner seals a new one).
fn existing_secret(
    path: &Path,
    replace: bool,
) -> anyhow::Result<Option<mailcred_core::crd::SealedSecret>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    let Ok(existing) = mailcred_core::credential::from_yaml(&text) else {
        return Ok(None);
    };
    match (existing.spec.sealed_secret, replace) {
        (Some(_), false) => bail!(
            "-w {}: it holds a sealed secret; a link replaces one only with --replace",
            path.display()
        ),
        (secret, _) => Ok(secret),
    }
}

/// `kubectl create -f -`, or with --replace a merge patch of the spec without sealedSecret, so
/// the stored secret stays until the owner seals the new one. `$KUBECTL` names the binary.
fn apply(resource: &MailCredential, replace: bool) -> anyhow::Result<()> {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let namespace = resource.metadata.namespace.clone().unwrap_or_default();
    let name = resource.metadata.name.clone().unwrap_or_default();
    let (args, input): (Vec<String>, String) = if replace {
        let patch = serde_json::json!({"spec": resource.spec});
        let args = [
            "patch",
            "mailcredential",
            &name,
            "-n",
            &namespace,
            "--type",
            "merge",
            "--patch-file",
            "/dev/stdin",
        ];
        (
            args.iter().map(|s| s.to_string()).collect(),
            patch.to_string(),
        )
    } else {
        (
            vec!["create".into(), "-f".into(), "-".into()],
            serde_json::to_string(resource)?,
        )
    };
    let mut child = std::process::Command::new(&kubectl)
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {kubectl}"))?;
    child
        .stdin
        .take()
        .context("no stdin for kubectl")?
        .write_all(input.as_bytes())
        .context("cannot write to kubectl")?;
    let status = child.wait().context("kubectl did not finish")?;
    if !status.success() {
        bail!(
            "{kubectl} {} failed ({status}); the link was not printed and is void",
            args[0]
        );
    }
    Ok(())
}

pub fn keygen_rsa(args: &KeygenArgs) -> anyhow::Result<()> {
    let public_path = args
        .public_output
        .clone()
        .unwrap_or_else(|| args.output.with_extension("pub"));
    if public_path.exists() {
        bail!(
            "--public-output {} exists; it is never overwritten",
            public_path.display()
        );
    }
    let key = LocalKms::generate_rsa()?;
    crate::seal::write_key(&key, &args.output)?;
    let pem = key
        .public_key_pem()
        .context("an RSA key has a public half")?;
    write_new(&public_path, &pem)?;
    eprintln!(
        "wrote a new local RSA key pair: private {} (fingerprint {}; the sidecar reads it with --local-key-file), public {} (for `request --kms local:` and the registration page's --public-key local:)",
        args.output.display(),
        key.fingerprint(),
        public_path.display()
    );
    Ok(())
}

fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_has_a_default_range_and_refuses_the_rest() {
        assert_eq!(parse_expires("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_expires("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_expires("1h").unwrap(), MAX_EXPIRES);
        for bad in [
            "",
            "10",
            "m",
            "61m",
            "2h",
            "59s",
            "0m",
            "-5m",
            "10 m",
            "9999999999m",
            "1d",
        ] {
            assert!(parse_expires(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_https_base_urls() {
        check_url("https://mail-keys.example.com").unwrap();
        check_url("https://127.0.0.1:8443/").unwrap();
        for bad in [
            "http://x.test",
            "https://",
            "https://x.test/#a",
            "https://x.test/?q",
            "ftp://x",
        ] {
            assert!(check_url(bad).is_err(), "{bad:?} accepted");
        }
    }
}
