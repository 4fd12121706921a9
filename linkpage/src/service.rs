//! What the two API calls do, apart from HTTP: check a link (rate limit, constant-time token
//! check, used, expired, already sealed, key known), describe it for the page, and store the
//! ciphertext the page made, once. Every outcome writes one audit line with the credential and
//! the client address, never the token.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mailcred_core::crd::{SealRequest, SealedSecret};
use mailcred_core::link_token::token_matches;
use mailcred_core::{CredentialBinding, Error as CoreError, envelope};
use serde_json::{Value, json};
use tracing::info;

use crate::body::{self, BadField, LinkRef};
use crate::keys::{PublicKey, PublicKeys};
use crate::limit::BadTokenLimiter;
use crate::refusal::Refusal;
use crate::store::{Store, StoreError, Stored};

/// Writes retried after a conflict (the operator's status patches move the resourceVersion).
const WRITE_ATTEMPTS: usize = 4;

pub struct Service {
    pub store: Arc<dyn Store>,
    pub keys: PublicKeys,
    pub limiter: BadTokenLimiter,
    pub now: fn() -> Time,
}

/// A link that passed every check.
struct Checked {
    stored: Stored,
    request: SealRequest,
    key: PublicKey,
    aad: Vec<u8>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn audit(event: &str, reason: &str, link: Option<&LinkRef>, client: IpAddr) {
    // Names only when they have the shape of Kubernetes names: nothing arbitrary reaches a log.
    let credential = link
        .filter(|l| is_name(&l.namespace, 63) && is_name(&l.name, 253))
        .map_or_else(|| "-".to_owned(), |l| format!("{}/{}", l.namespace, l.name));
    info!(target: "audit", event, reason, credential, client = %client, "registration page");
}

/// Lowercase RFC 1123 name of at most `max` bytes (a namespace is also a single label; the
/// store answers "unknown" for a dotted one).
fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl Service {
    async fn check(&self, link: &LinkRef, client: IpAddr) -> Result<Checked, Refusal> {
        if self.limiter.is_limited(client) {
            return Err(Refusal::RateLimited);
        }
        let unknown = || {
            self.limiter.record_failure(client);
            Refusal::Unknown
        };
        if !is_name(&link.namespace, 63) || !is_name(&link.name, 253) {
            return Err(unknown());
        }
        let stored = match self.store.get(&link.namespace, &link.name).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return Err(unknown()),
            Err(_) => return Err(Refusal::Unavailable),
        };
        let Some(request) = stored.resource.spec.seal_request.clone() else {
            return Err(unknown());
        };
        if !token_matches(&link.token, &request.token_sha256) {
            return Err(unknown());
        }
        if request.used_at.is_some() {
            return Err(Refusal::Used);
        }
        if (self.now)() >= request.expires_at {
            return Err(Refusal::Expired);
        }
        if stored.resource.spec.sealed_secret.is_some() && !request.replace {
            return Err(Refusal::AlreadySealed);
        }
        let key = self
            .keys
            .find(&request.kms)
            .cloned()
            .ok_or(Refusal::KeyNotConfigured)?;
        let binding = CredentialBinding::for_resource(&stored.resource)
            .map_err(|_| Refusal::InvalidRequest)?;
        let aad = binding.associated_data(envelope::FORMAT_VERSION, &request.kms);
        Ok(Checked {
            stored,
            request,
            key,
            aad,
        })
    }

    /// `POST /api/open`: what the page shows, and what it seals with.
    pub async fn open(&self, client: IpAddr, bytes: &[u8]) -> Result<Value, Refusal> {
        let link = body::parse_open(bytes).map_err(|f| bad_body(f, client))?;
        let result = self.check(&link, client).await;
        let checked = match result {
            Ok(c) => c,
            Err(r) => {
                audit("refused", r.label(), Some(&link), client);
                return Err(r);
            }
        };
        audit("link_opened", "ok", Some(&link), client);
        let spec = &checked.stored.resource.spec;
        let servers: Vec<Value> = spec
            .endpoints()
            .map(|(kind, e)| {
                json!({"kind": kind.as_str(), "host": e.host, "port": e.port, "tls": e.tls.as_str(), "insecure": e.insecure})
            })
            .collect();
        Ok(json!({
            "namespace": link.namespace,
            "name": link.name,
            "username": spec.username,
            "servers": servers,
            "requestedBy": checked.request.requested_by,
            "expiresAt": checked.request.expires_at.0.to_string(),
            "replace": checked.request.replace,
            "hasSecret": spec.sealed_secret.is_some(),
            "kms": {"provider": checked.request.kms.provider.as_str(), "keyId": checked.request.kms.key_id},
            "publicKey": STANDARD.encode(&checked.key.spki_der),
            "aad": STANDARD.encode(&checked.aad),
            "aadSha256": sha256_hex(&checked.aad),
            "maxPasswordBytes": mailcred_core::secret::MAX_PASSWORD_BYTES,
        }))
    }

    /// `POST /api/seal`: stores the page's ciphertext and marks the link used, in one write.
    pub async fn seal(&self, client: IpAddr, bytes: &[u8]) -> Result<Value, Refusal> {
        let submitted = body::parse_seal(bytes).map_err(|f| bad_body(f, client))?;
        let link = &submitted.link;
        let result = self.seal_checked(client, &submitted).await;
        match &result {
            Ok(_) => audit("sealed", "ok", Some(link), client),
            Err(r) => audit("refused", r.label(), Some(link), client),
        }
        result
    }

    async fn seal_checked(
        &self,
        client: IpAddr,
        submitted: &body::SealBody,
    ) -> Result<Value, Refusal> {
        for _ in 0..WRITE_ATTEMPTS {
            let checked = self.check(&submitted.link, client).await?;
            if sha256_hex(&checked.aad) != submitted.aad_sha256 {
                return Err(Refusal::Changed);
            }
            let sealed = SealedSecret {
                version: envelope::FORMAT_VERSION,
                kms: checked.request.kms.clone(),
                encrypted_data_key: submitted.encrypted_data_key.clone(),
                nonce: submitted.nonce.clone(),
                ciphertext: submitted.ciphertext.clone(),
            };
            check_envelope(&sealed, &checked.key)?;
            let mut resource = checked.stored.resource.clone();
            let mut request = checked.request.clone();
            request.used_at = Some((self.now)());
            resource.spec.seal_request = Some(request);
            resource.spec.sealed_secret = Some(sealed.clone());
            match self.store.replace(&resource, &checked.stored.version).await {
                Ok(()) => {
                    return Ok(json!({
                        "namespace": submitted.link.namespace,
                        "name": submitted.link.name,
                        "fingerprint": envelope::fingerprint(&sealed),
                    }));
                }
                // Someone else wrote: look again (a double submit now finds the link used).
                Err(StoreError::Conflict) => continue,
                Err(StoreError::Unavailable(_)) => return Err(Refusal::Unavailable),
            }
        }
        Err(Refusal::Unavailable)
    }
}

fn bad_body(field: BadField, client: IpAddr) -> Refusal {
    let refusal = Refusal::BadRequest(field);
    audit("refused", refusal.label(), None, client);
    refusal
}

/// What can be checked of the page's ciphertext without a key: the envelope's shapes, and that
/// the wrapped key has the RSA modulus's size.
fn check_envelope(sealed: &SealedSecret, key: &PublicKey) -> Result<(), Refusal> {
    let parsed = envelope::parse(sealed).map_err(|e| match e {
        CoreError::Malformed { field, reason } => Refusal::BadRequest(BadField::new(
            match field {
                "encryptedDataKey" | "nonce" | "ciphertext" => field,
                _ => "body",
            },
            reason,
        )),
        _ => Refusal::BadRequest(BadField::new("body", e.to_string())),
    })?;
    let modulus = mailcred_core::kms::RsaPublicKeySealer::local_from_spki(&key.spki_der)
        .map(|s| s.wrapped_len())
        .map_err(|_| Refusal::KeyNotConfigured)?;
    if parsed.wrapped_key.len() != modulus {
        return Err(Refusal::BadRequest(BadField::new(
            "encryptedDataKey",
            format!(
                "{} bytes; RSA-OAEP with this key gives {modulus}",
                parsed.wrapped_key.len()
            ),
        )));
    }
    Ok(())
}
