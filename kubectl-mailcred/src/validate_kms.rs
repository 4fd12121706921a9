//! `--kms` and its companion flags, checked against what the sidecar accepts (schema limits
//! from crds/mailcredential.yaml, key-id shape from `envelope::validate_key_ref`).

use anyhow::bail;
use mailcred_core::crd::{DataKeyWrapping, KmsKeyRef, KmsProviderKind};
use mailcred_core::envelope;

use crate::cli::SealArgs;
use crate::seal::KmsScheme;

const MAX_REGION_LEN: usize = 64;
const MAX_KMS_ENDPOINT_LEN: usize = 2048;

/// The key reference the sealer will record has the shape the sidecar accepts; the region and
/// endpoint fit the schema. The local key file's fingerprint is checked when it is loaded.
pub fn kms(scheme: &KmsScheme, args: &SealArgs) -> anyhow::Result<()> {
    let aws_key = match scheme {
        KmsScheme::Aws(key_id) => Some(("--kms", key_id.clone())),
        KmsScheme::AwsPublicKey(_) => args.kms_key_id.clone().map(|k| ("--kms-key-id", k)),
        KmsScheme::Local(_) => None,
    };
    if args.kms_key_id.is_some() && !matches!(scheme, KmsScheme::AwsPublicKey(_)) {
        bail!("--kms-key-id only goes with --kms aws-public-key:<file>");
    }
    if matches!(scheme, KmsScheme::Local(_))
        && (args.kms_region.is_some() || args.kms_endpoint.is_some())
    {
        bail!("--kms-region and --kms-endpoint only go with --kms aws:... or aws-public-key:...");
    }
    if let Some((flag, key_id)) = aws_key {
        let key_ref = KmsKeyRef {
            provider: KmsProviderKind::Aws,
            key_id,
            wrapping: DataKeyWrapping::SymmetricDefault,
            region: None,
            endpoint: None,
        };
        // The error's own text names the spec field; the user typed a flag.
        envelope::validate_key_ref(&key_ref).map_err(|e| match e {
            mailcred_core::Error::Malformed { reason, .. } => anyhow::anyhow!("{flag}: {reason}"),
            other => anyhow::anyhow!("{flag}: {other}"),
        })?;
    }
    if let Some(region) = &args.kms_region {
        let shaped = !region.is_empty()
            && region.len() <= MAX_REGION_LEN
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !shaped {
            bail!("--kms-region {region:?}: not an AWS region (e.g. eu-west-1)");
        }
    }
    if let Some(url) = &args.kms_endpoint {
        let shaped = (url.starts_with("https://") || url.starts_with("http://"))
            && url.len() <= MAX_KMS_ENDPOINT_LEN
            && !url.chars().any(char::is_whitespace);
        if !shaped {
            bail!(
                "--kms-endpoint {url:?}: expected an http(s):// URL of at most {MAX_KMS_ENDPOINT_LEN} characters"
            );
        }
    }
    Ok(())
}
