//! Lifetime GC: a MailCredential whose `spec.expiresAt` has passed is deleted by the operator
//! (the webmail-session pattern of docs/accounts.md: the account lives as long as the user's
//! session). The controller requeues each credential at its expiry instant, so deletion is on
//! time without polling; the sidecar refuses an expired account on its own at once
//! (`mailcred_core::accounts::expired_at`), so the delete is clean-up, not the gate.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use mailcred_core::accounts::expired_at;
use mailcred_core::crd::MailCredential;
use tracing::{info, warn};

use crate::controller::Context;
use crate::{Error, Result};

/// Reason of the Normal Event published just before the delete.
pub const EXPIRED_REASON: &str = "Expired";

/// Where a credential stands with respect to its lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// No `spec.expiresAt`: lives until someone deletes it.
    Unbounded,
    /// Ends after this long (rounded up to whole seconds, plus one so that the clock has
    /// certainly passed `expiresAt` at the next look).
    EndsIn(Duration),
    /// `expiresAt` has passed: delete it.
    Ended,
}

/// The lifetime of `obj` at `now`.
pub fn lifetime(obj: &MailCredential, now: &Time) -> Lifetime {
    let Some(end) = obj.spec.expires_at.as_ref() else {
        return Lifetime::Unbounded;
    };
    if expired_at(obj, now) {
        return Lifetime::Ended;
    }
    let left = end.0.duration_since(now.0);
    let secs = left.as_secs().max(0).unsigned_abs();
    let nanos = u64::from(left.subsec_nanos().max(0).unsigned_abs() > 0);
    Lifetime::EndsIn(Duration::from_secs(
        secs.saturating_add(nanos).saturating_add(1),
    ))
}

/// The requeue delay: the resync period, or sooner when the lifetime ends first.
pub fn next_look(obj: &MailCredential, now: &Time, resync: Duration) -> Duration {
    match lifetime(obj, now) {
        Lifetime::EndsIn(left) => left.min(resync),
        Lifetime::Unbounded | Lifetime::Ended => resync,
    }
}

/// Announces and deletes an expired credential. The delete is conditional on the uid, so a
/// credential re-created under the same name meanwhile is not touched. Already gone (404) or
/// replaced (409 on the precondition) both count as done.
pub async fn delete_expired(obj: &MailCredential, ctx: &Context) -> Result<Action> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let ended = obj
        .spec
        .expires_at
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let event = Event {
        type_: EventType::Normal,
        reason: EXPIRED_REASON.into(),
        note: Some(format!("Expired: lifetime ended at {ended}; deleted")),
        action: "Delete".into(),
        secondary: None,
    };
    // Best effort: the Event outlives the object (Events are kept ~1 h) so that `kubectl
    // events` still says why it went; a failed publish must not keep an expired account alive.
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        warn!(credential = %format!("{namespace}/{name}"), error = %e, "could not publish the Expired Event");
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: obj.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    let api = Api::<MailCredential>::namespaced(ctx.client.clone(), &namespace);
    match api.delete(&name, &params).await {
        Ok(_) => {
            ctx.metrics.expired_deleted.inc();
            info!(credential = %format!("{namespace}/{name}"), expired_at = %ended, "lifetime ended; deleted");
        }
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            info!(credential = %format!("{namespace}/{name}"), code = status.code, "expired credential already gone or replaced");
        }
        Err(e) => {
            return Err(Error::kube(format!(
                "deleting expired MailCredential {namespace}/{name}"
            ))(e));
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use mailcred_core::crd::MailCredentialSpec;

    fn at(secs: i64, nanos: i32) -> Time {
        Time(Timestamp::new(secs, nanos).unwrap())
    }

    #[test]
    fn lifetime_rounds_up_and_ends_at_the_instant() {
        let spec: MailCredentialSpec = serde_json::from_value(serde_json::json!({
            "smtp": {"host": "smtp.example.com", "port": 587, "tls": "starttls"},
            "username": "a@example.com",
            "access": {"serviceAccounts": ["a"]}
        }))
        .expect("a spec");
        let mut r = MailCredential::new("a", spec);
        let now = at(1_800_000_000, 0);
        assert_eq!(lifetime(&r, &now), Lifetime::Unbounded);
        let resync = Duration::from_secs(600);
        assert_eq!(next_look(&r, &now, resync), resync);

        r.spec.expires_at = Some(at(1_800_000_030, 0));
        assert_eq!(
            lifetime(&r, &now),
            Lifetime::EndsIn(Duration::from_secs(31))
        );
        assert_eq!(next_look(&r, &now, resync), Duration::from_secs(31));
        // A part of a second left is a whole second more, never a look too early.
        assert_eq!(
            lifetime(&r, &at(1_800_000_029, 500_000_000)),
            Lifetime::EndsIn(Duration::from_secs(2))
        );
        r.spec.expires_at = Some(at(1_800_100_000, 0));
        assert_eq!(
            next_look(&r, &now, resync),
            resync,
            "far away: resync first"
        );

        r.spec.expires_at = Some(now.clone());
        assert_eq!(lifetime(&r, &now), Lifetime::Ended);
        assert_eq!(lifetime(&r, &at(1_900_000_000, 0)), Lifetime::Ended);
    }
}
