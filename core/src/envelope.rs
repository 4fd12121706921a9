//! Envelope format (docs/envelope.md): a KMS-wrapped 256-bit data key and the secret under
//! AES-256-GCM, with the [`CredentialBinding`] as associated data. Version 1 holds a password;
//! version 2 an OAuth grant secret (JSON) and binds `spec.oauth` as well.

use aws_lc_rs::aead::NONCE_LEN;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use zeroize::Zeroizing;

use crate::binding::{CredentialBinding, OAUTH_VERSION, PASSWORD_VERSION};
use crate::crd::{KmsKeyRef, KmsProviderKind, SealedSecret};
use crate::kms::{DataKeySealer, KmsProvider};
use crate::secret::{MAX_PASSWORD_BYTES, MailPassword};
use crate::upstream_auth::GrantSecret;
use crate::{Error, aead, grant};

/// The password format version (kept for callers that predate version 2).
pub const FORMAT_VERSION: u32 = PASSWORD_VERSION;
/// The newest format version this build reads and writes.
pub const LATEST_VERSION: u32 = OAUTH_VERSION;
/// Longest wrapped data key accepted (RSA-4096 gives 512 bytes, KMS blobs ~200).
const MAX_WRAPPED_KEY_BYTES: usize = 4096;
/// The payload is padded to a multiple of this, so the ciphertext does not reveal the
/// password's exact length.
const PAYLOAD_BLOCK: usize = 64;
/// Largest version 1 payload: length prefix plus the longest password, padded.
const MAX_PAYLOAD_BYTES: usize = (2 + MAX_PASSWORD_BYTES).div_ceil(PAYLOAD_BLOCK) * PAYLOAD_BLOCK;
/// Largest version 2 payload: length prefix plus the longest grant JSON, padded.
const MAX_GRANT_PAYLOAD_BYTES: usize =
    (2 + grant::MAX_GRANT_JSON_BYTES).div_ceil(PAYLOAD_BLOCK) * PAYLOAD_BLOCK;

/// A sealed secret whose fields decode and have plausible sizes; nothing is decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSealedSecret {
    pub wrapped_key: Vec<u8>,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

/// Checks everything that can be checked without a key: version, key reference, base64, sizes.
/// This is what the operator validates (it never decrypts).
pub fn parse(sealed: &SealedSecret) -> Result<ParsedSealedSecret, Error> {
    let max_payload = match sealed.version {
        PASSWORD_VERSION => MAX_PAYLOAD_BYTES,
        OAUTH_VERSION => MAX_GRANT_PAYLOAD_BYTES,
        found => {
            return Err(Error::UnsupportedVersion {
                found,
                supported: LATEST_VERSION,
            });
        }
    };
    validate_key_ref(&sealed.kms)?;
    let wrapped_key = decode("encryptedDataKey", &sealed.encrypted_data_key)?;
    if wrapped_key.is_empty() || wrapped_key.len() > MAX_WRAPPED_KEY_BYTES {
        return Err(Error::Malformed {
            field: "encryptedDataKey",
            reason: format!(
                "{} bytes, expected 1 to {MAX_WRAPPED_KEY_BYTES}",
                wrapped_key.len()
            ),
        });
    }
    let nonce_bytes = decode("nonce", &sealed.nonce)?;
    let nonce: [u8; NONCE_LEN] =
        nonce_bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::Malformed {
                field: "nonce",
                reason: format!("{} bytes, a nonce has {NONCE_LEN}", nonce_bytes.len()),
            })?;
    let ciphertext = decode("ciphertext", &sealed.ciphertext)?;
    let payload_len = ciphertext.len().wrapping_sub(aead::TAG_LEN);
    if ciphertext.len() < aead::TAG_LEN
        || payload_len == 0
        || payload_len > max_payload
        || payload_len % PAYLOAD_BLOCK != 0
    {
        return Err(Error::Malformed {
            field: "ciphertext",
            reason: format!(
                "{} bytes; expected a multiple of {PAYLOAD_BLOCK} up to {max_payload}, plus the 16-byte tag",
                ciphertext.len()
            ),
        });
    }
    Ok(ParsedSealedSecret {
        wrapped_key,
        nonce,
        ciphertext,
    })
}

/// Checks that the key id has the shape its provider uses.
pub fn validate_key_ref(kms: &KmsKeyRef) -> Result<(), Error> {
    let bad = |reason: String| Error::Malformed {
        field: "kms.keyId",
        reason,
    };
    match kms.provider {
        KmsProviderKind::Local => {
            // SYMMETRIC_DEFAULT: a key-encryption key file; RSAES_OAEP_SHA_256: a local RSA
            // key pair (kms/local_rsa.rs). Both have a `sha256:` fingerprint as key id.
            let hex = kms.key_id.strip_prefix("sha256:").unwrap_or_default();
            if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!(
                    "{:?} is not a local key fingerprint (sha256: and 32 hex digits)",
                    kms.key_id
                )));
            }
        }
        KmsProviderKind::Aws => {
            let id = kms.key_id.as_str();
            let is_arn = id.starts_with("arn:") && id.split(':').nth(2) == Some("kms");
            let is_alias = id.strip_prefix("alias/").is_some_and(|a| {
                !a.is_empty()
                    && a.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
            });
            let is_key_id = (id.len() == 36 || id.starts_with("mrk-"))
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !(is_arn || is_alias || is_key_id) {
                return Err(bad(format!(
                    "{id:?} is not an AWS KMS key ARN, alias or key id"
                )));
            }
        }
    }
    Ok(())
}

/// Seals `password` for `binding` with a fresh data key from `sealer` (version 1). A binding
/// with `spec.oauth` takes [`seal_grant`] instead.
pub async fn seal(
    sealer: &dyn DataKeySealer,
    binding: &CredentialBinding,
    password: &MailPassword,
) -> Result<SealedSecret, Error> {
    if binding.oauth.is_some() {
        return Err(Error::InvalidSpec(
            "spec.oauth is set, so the sealed secret must be the OAuth grant's, not a password; seal with the --grant options of `kubectl mailcred seal`".into(),
        ));
    }
    let payload = encode_payload(password.expose().as_bytes());
    seal_payload(sealer, binding, PASSWORD_VERSION, &payload).await
}

/// Seals an OAuth grant secret for `binding` (version 2), after checking that it holds
/// exactly the fields `spec.oauth` needs.
pub async fn seal_grant(
    sealer: &dyn DataKeySealer,
    binding: &CredentialBinding,
    oauth: &crate::crd::OAuthSpec,
    secret: &GrantSecret,
) -> Result<SealedSecret, Error> {
    let bound = binding.oauth.as_ref().ok_or_else(|| {
        Error::InvalidSpec("a grant secret needs spec.oauth; without it seal a password".into())
    })?;
    if *bound != crate::binding::BoundOAuth::new(oauth)? {
        return Err(Error::InvalidSpec(
            "the OAuth settings given differ from the binding's spec.oauth".into(),
        ));
    }
    grant::validate(oauth, secret)?;
    let json = grant::to_json(secret)?;
    let payload = encode_payload(&json);
    seal_payload(sealer, binding, OAUTH_VERSION, &payload).await
}

async fn seal_payload(
    sealer: &dyn DataKeySealer,
    binding: &CredentialBinding,
    version: u32,
    payload: &[u8],
) -> Result<SealedSecret, Error> {
    let kms = sealer.key_ref();
    validate_key_ref(&kms)?;
    let generated = sealer.generate_data_key(&binding.context).await?;
    let aad = binding.associated_data(version, &kms);
    let (nonce, ciphertext) = aead::seal(generated.key.expose(), &aad, payload)?;
    Ok(SealedSecret {
        version,
        kms,
        encrypted_data_key: STANDARD.encode(&generated.wrapped),
        nonce: STANDARD.encode(nonce),
        ciphertext: STANDARD.encode(ciphertext),
    })
}

/// Opens a sealed password for `binding`: unwraps the data key through `provider` (with the
/// encryption context), then decrypts and authenticates the password. A version 2 envelope
/// (or a binding with `spec.oauth`) is a [`Error::SealedSecretMismatch`].
pub async fn open(
    provider: &dyn KmsProvider,
    binding: &CredentialBinding,
    sealed: &SealedSecret,
) -> Result<MailPassword, Error> {
    let payload = open_payload(provider, binding, sealed, PASSWORD_VERSION).await?;
    MailPassword::from_bytes(payload)
}

/// Opens a sealed OAuth grant secret (version 2) for `binding`.
pub async fn open_grant(
    provider: &dyn KmsProvider,
    binding: &CredentialBinding,
    sealed: &SealedSecret,
) -> Result<GrantSecret, Error> {
    let payload = open_payload(provider, binding, sealed, OAUTH_VERSION).await?;
    grant::from_json(&payload)
}

/// Decrypts and unpads the payload of an envelope of version `expected`.
async fn open_payload(
    provider: &dyn KmsProvider,
    binding: &CredentialBinding,
    sealed: &SealedSecret,
    expected: u32,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let parsed = parse(sealed)?;
    // The payload kind is bound: a password envelope on an OAuth spec (someone added oauth to
    // send the password to a token endpoint), or a grant on a password spec, never opens.
    if sealed.version != binding.format_version() || sealed.version != expected {
        return Err(Error::SealedSecretMismatch);
    }
    let key = provider
        .decrypt_data_key(&sealed.kms, &parsed.wrapped_key, &binding.context)
        .await?;
    let aad = binding.associated_data(sealed.version, &sealed.kms);
    let payload = aead::open(key.expose(), &parsed.nonce, &aad, &parsed.ciphertext)?
        .ok_or(Error::SealedSecretMismatch)?;
    decode_payload(&payload)
}

/// `u16 length (BE) || secret || zero padding` to a multiple of [`PAYLOAD_BLOCK`].
fn encode_payload(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let padded = (2 + bytes.len()).div_ceil(PAYLOAD_BLOCK) * PAYLOAD_BLOCK;
    let mut payload = Zeroizing::new(Vec::with_capacity(padded));
    // Passwords and grant JSON are capped far below u16::MAX.
    payload.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    payload.extend_from_slice(bytes);
    payload.resize(padded, 0);
    payload
}

fn decode_payload(payload: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let malformed = |reason: &str| Error::Malformed {
        field: "ciphertext",
        reason: format!("the decrypted payload {reason} (was it sealed by a mailcred tool?)"),
    };
    let (len, rest) = payload
        .split_first_chunk::<2>()
        .ok_or_else(|| malformed("is empty"))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if len > rest.len() || rest[len..].iter().any(|b| *b != 0) {
        return Err(malformed("has an invalid length or padding"));
    }
    Ok(Zeroizing::new(rest[..len].to_vec()))
}

/// `sha256:` of the sealed secret as stored; changes exactly when it is re-sealed or edited.
pub fn fingerprint(sealed: &SealedSecret) -> String {
    let mut input = Vec::new();
    input.extend_from_slice(&sealed.version.to_be_bytes());
    for part in [
        sealed.kms.provider.as_str(),
        sealed.kms.key_id.as_str(),
        sealed.kms.wrapping.as_str(),
        sealed.encrypted_data_key.as_str(),
        sealed.nonce.as_str(),
        sealed.ciphertext.as_str(),
    ] {
        input.extend_from_slice(&(part.len() as u32).to_be_bytes());
        input.extend_from_slice(part.as_bytes());
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn decode(field: &'static str, text: &str) -> Result<Vec<u8>, Error> {
    STANDARD.decode(text.trim()).map_err(|e| Error::Malformed {
        field,
        reason: format!("not valid base64 ({e})"),
    })
}
