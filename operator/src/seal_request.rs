//! Credentials without a sealed secret: pending while a seal request link is open, expired
//! once it lapsed unused. Expired requests are marked and left in place, not deleted: the
//! resource may be referenced by a Deployment's annotation, deleting it would hide the state
//! from `kubectl get mcred`, and the operator deleting user objects on a clock is one more
//! destructive right it does not need. The user re-requests or deletes (docs/link-sealing.md).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mailcred_core::crd::{MailCredentialSpec, SecretState};

use crate::validation::Problem;

/// Condition reason while the owner has not used the link yet.
pub const AWAITING_OWNER: &str = "AwaitingOwner";
/// Condition reason once the link expired unused.
pub const REQUEST_EXPIRED: &str = "SealRequestExpired";
/// Condition reason when there is neither a secret nor a request.
pub const NOT_SEALED: &str = "NotSealed";

/// Why a spec without `sealedSecret` is not usable, at `now`.
pub fn unsealed_problem(spec: &MailCredentialSpec, now: &Time) -> Problem {
    let Some(request) = &spec.seal_request else {
        return Problem::new(
            NOT_SEALED,
            "spec.sealedSecret is missing and there is no spec.sealRequest; seal the password with `kubectl mailcred seal`, or send the mailbox owner a link with `kubectl mailcred request`",
        );
    };
    let expires = request.expires_at.0;
    match request.state_at(now) {
        SecretState::Expired => Problem::new(
            REQUEST_EXPIRED,
            format!(
                "the seal request link (asked by {}) expired at {expires} unused; it is kept, not deleted: run `kubectl mailcred request` again or delete this MailCredential",
                request.requested_by
            ),
        ),
        // usedAt without a sealed secret: someone removed the secret after the link was used.
        SecretState::Sealed | SecretState::Invalid => Problem::new(
            NOT_SEALED,
            "spec.sealRequest was used but spec.sealedSecret is missing (removed since?); request a new link or seal with `kubectl mailcred seal`",
        ),
        SecretState::Pending => Problem::new(
            AWAITING_OWNER,
            format!(
                "waiting for the mailbox owner to open the link sent by {} and type the password; the link expires at {expires}",
                request.requested_by
            ),
        ),
    }
}

/// The `Secret` column.
pub fn secret_state(sealed: &Result<String, Problem>, spec: &MailCredentialSpec) -> SecretState {
    match sealed {
        Ok(_) => SecretState::Sealed,
        Err(p) if p.reason == AWAITING_OWNER => SecretState::Pending,
        Err(p) if p.reason == REQUEST_EXPIRED => SecretState::Expired,
        Err(_) if spec.sealed_secret.is_none() && spec.seal_request.is_some() => {
            SecretState::Invalid
        }
        Err(_) => SecretState::Invalid,
    }
}

/// How long until a pending request expires, so the controller looks again right then and
/// flips the status to Expired without waiting for the resync.
pub fn until_expiry(spec: &MailCredentialSpec, now: &Time) -> Option<Duration> {
    let request = spec.seal_request.as_ref()?;
    if spec.sealed_secret.is_some() || request.state_at(now) != SecretState::Pending {
        return None;
    }
    let left = request.expires_at.0.duration_since(now.0);
    let secs = left.as_secs().max(0).unsigned_abs();
    // One second late, so the clock has certainly passed expiresAt at the next look.
    Some(Duration::from_secs(secs.saturating_add(1)))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use mailcred_core::crd::{DataKeyWrapping, KmsKeyRef, KmsProviderKind, SealRequest};

    use super::*;

    fn pending(minutes: i64) -> (MailCredentialSpec, Time) {
        let now = Timestamp::now();
        let mut spec: MailCredentialSpec = serde_json::from_value(serde_json::json!({
            "smtp": {"host": "smtp.example.test", "port": 587, "tls": "starttls"},
            "username": "billing@example.test",
            "access": {"serviceAccounts": ["app"]},
        }))
        .unwrap();
        spec.sealed_secret = None;
        spec.seal_request = Some(SealRequest {
            token_sha256: "0".repeat(64),
            expires_at: Time(now.checked_add(SignedDuration::from_mins(minutes)).unwrap()),
            requested_by: "alice".into(),
            replace: false,
            kms: KmsKeyRef {
                provider: KmsProviderKind::Local,
                key_id: "sha256:00000000000000000000000000000000".into(),
                wrapping: DataKeyWrapping::RsaesOaepSha256,
                region: None,
                endpoint: None,
            },
            used_at: None,
        });
        (spec, Time(now))
    }

    #[test]
    fn pending_then_expired_then_nothing() {
        let (spec, now) = pending(10);
        let p = unsealed_problem(&spec, &now);
        assert_eq!(p.reason, AWAITING_OWNER);
        assert!(p.message.contains("alice"), "{}", p.message);
        assert_eq!(secret_state(&Err(p), &spec), SecretState::Pending);
        let left = until_expiry(&spec, &now).unwrap();
        assert!(left.as_secs() > 590 && left.as_secs() <= 601, "{left:?}");

        let (spec, now) = pending(-1);
        let p = unsealed_problem(&spec, &now);
        assert_eq!(p.reason, REQUEST_EXPIRED);
        assert_eq!(secret_state(&Err(p), &spec), SecretState::Expired);
        assert_eq!(until_expiry(&spec, &now), None);

        let (mut spec, now) = pending(10);
        spec.seal_request = None;
        assert_eq!(unsealed_problem(&spec, &now).reason, NOT_SEALED);
    }
}
