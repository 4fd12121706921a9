//! The status the controller wants a MailCredential to show, derived from its validation, and
//! the condition transitions that deserve an Event. `lastTransitionTime` only moves when a
//! condition's status flips, so a status that did not change compares equal and is not patched.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use mailcred_core::crd::MailCredentialStatus;

use crate::seal_age::Seal;
use crate::validation::{Problem, Validation};

pub const READY: &str = "Ready";
pub const SEALED: &str = "Sealed";
pub const ACCESS_CONFIGURED: &str = "AccessConfigured";
pub const INSECURE_UPSTREAM: &str = "InsecureUpstream";
/// OAuth credentials only: True when the grant must not be shared by several pods.
pub const SINGLE_REPLICA_GRANT: &str = "SingleReplicaGrant";

/// Condition messages are read by people in `kubectl describe`; beyond this they stop helping.
const MAX_MESSAGE_BYTES: usize = 4096;

/// A condition without its timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl DesiredCondition {
    /// True when this state is the healthy one (`InsecureUpstream` is healthy when false).
    pub fn is_healthy(&self) -> bool {
        // Waiting for the owner is the expected state after `kubectl mailcred request`.
        if self.reason == crate::seal_request::AWAITING_OWNER {
            return true;
        }
        if self.type_ == INSECURE_UPSTREAM
            || self.type_ == SINGLE_REPLICA_GRANT
            || self.type_ == crate::seal_age::KEY_RETIRED
        {
            !self.status
        } else {
            self.status
        }
    }
}

/// Conditions in a fixed order: Ready, Sealed, AccessConfigured, InsecureUpstream, and for
/// OAuth credentials SingleReplicaGrant.
pub fn desired_conditions(v: &Validation, role_name: &str) -> Vec<DesiredCondition> {
    let sealed = match &v.sealed {
        Ok(fp) => cond(
            SEALED,
            true,
            "SealedSecretValid",
            format!(
                "sealed secret parses (format version {}, fingerprint {fp}); it is not decrypted here: the operator holds no key",
                v.sealed_version
            ),
        ),
        Err(p) => cond(SEALED, false, p.reason, p.message.clone()),
    };
    let access = if v.access.is_empty() {
        cond(
            ACCESS_CONFIGURED,
            true,
            "RoleBound",
            format!(
                "ServiceAccounts {} may get/list/watch this MailCredential (Role and RoleBinding {role_name})",
                v.service_accounts.join(", ")
            ),
        )
    } else {
        problems_condition(ACCESS_CONFIGURED, &v.access)
    };
    let insecure = if v.insecure_endpoints.is_empty() {
        cond(
            INSECURE_UPSTREAM,
            false,
            "TlsVerified",
            "every upstream endpoint uses TLS with certificate verification",
        )
    } else {
        cond(
            INSECURE_UPSTREAM,
            true,
            "PlaintextUpstream",
            format!(
                "insecure: true sends the password or token in plaintext to {}; use only in tests, set tls: implicit or starttls (https:// for a token endpoint) otherwise",
                v.insecure_endpoints.join(", ")
            ),
        )
    };

    let mut blocking: Vec<Problem> = Vec::new();
    if let Err(p) = &v.sealed {
        blocking.push(p.clone());
    }
    blocking.extend(v.spec.iter().cloned());
    blocking.extend(v.access.iter().cloned());
    let ready = if blocking.is_empty() {
        cond(
            READY,
            true,
            "Ready",
            format!(
                "usable by pods running as ServiceAccounts {} (annotate them with mailcred.io/inject)",
                v.service_accounts.join(", ")
            ),
        )
    } else {
        problems_condition(READY, &blocking)
    };
    let mut out = vec![ready, sealed, access, insecure];
    match v.single_replica_grant {
        Some(true) => out.push(cond(
            SINGLE_REPLICA_GRANT,
            true,
            "RefreshTokenGrant",
            mailcred_core::oauth_rules::SINGLE_REPLICA_MESSAGE,
        )),
        Some(false) => out.push(cond(
            SINGLE_REPLICA_GRANT,
            false,
            "ReplicaSafeGrant",
            "the grant obtains tokens from its own identity (no refresh token to rotate), so any number of replicas may share it",
        )),
        None => {}
    }
    out
}

fn problems_condition(type_: &'static str, problems: &[Problem]) -> DesiredCondition {
    let reason = problems.first().map_or("Invalid", |p| p.reason);
    let message = problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    cond(type_, false, reason, message)
}

fn cond(
    type_: &'static str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
) -> DesiredCondition {
    DesiredCondition {
        type_,
        status,
        reason: reason.to_string(),
        message: truncate(message.into(), MAX_MESSAGE_BYTES),
    }
}

/// Cuts on a char boundary and says so.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut cut = max.saturating_sub(4);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(" ...");
    s
}

/// The full status; timestamps of unchanged conditions are kept from `current`, and so is
/// `sealedAt` while the fingerprint is unchanged.
pub fn desired_status(
    current: Option<&MailCredentialStatus>,
    conditions: &[DesiredCondition],
    v: &Validation,
    seal: &Seal,
    generation: Option<i64>,
    now: &Time,
) -> MailCredentialStatus {
    let previous = current.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let conditions = conditions
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: d.type_.to_string(),
                status: status.to_string(),
                reason: d.reason.clone(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect();
    MailCredentialStatus {
        conditions,
        observed_generation: generation,
        sealed_secret_fingerprint: v.sealed.as_ref().ok().cloned(),
        secret: Some(v.secret),
        insecure_endpoints: v.insecure_endpoints.clone(),
        sealed_at: seal.sealed_at(current, now),
        kms_key_id: seal.kms_key_id.clone(),
    }
}

/// Conditions whose status or reason differ from `current` (a new credential: all of them).
pub fn transitions<'a>(
    current: Option<&MailCredentialStatus>,
    desired: &'a [DesiredCondition],
) -> Vec<&'a DesiredCondition> {
    let previous = current.map(|s| s.conditions.as_slice()).unwrap_or_default();
    desired
        .iter()
        .filter(|d| {
            let status = if d.status { "True" } else { "False" };
            !previous
                .iter()
                .any(|c| c.type_ == d.type_ && c.status == status && c.reason == d.reason)
        })
        .collect()
}
