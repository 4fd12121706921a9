//! A seal request: the pending state of a MailCredential whose password the mailbox owner
//! types into a one-time link (docs/link-sealing.md). Only the SHA-256 of the link's token is
//! stored; the token itself exists in the link alone.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::KmsKeyRef;

/// Written by `kubectl mailcred request`; `usedAt` is set by the registration page in the same
/// update that stores `spec.sealedSecret`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SealRequest {
    /// Lowercase hex SHA-256 of the link's token (the token is never stored).
    #[schemars(length(min = 64, max = 64), regex(pattern = r"^[0-9a-f]{64}$"))]
    pub token_sha256: String,
    /// After this instant the link is refused.
    pub expires_at: Time,
    /// Who asked (shown on the page so the owner can check it), e.g. a user name or email.
    #[schemars(length(min = 1, max = 256))]
    pub requested_by: String,
    /// Whether the link may replace an existing sealed secret; without it the page refuses a
    /// credential that already holds one.
    #[serde(default)]
    pub replace: bool,
    /// The key the page seals to. The registration page holds only public keys and refuses a
    /// key it was not configured with, so editing this cannot redirect the password.
    pub kms: KmsKeyRef,
    /// When the link was used; a used link is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<Time>,
}

impl SealRequest {
    /// Where the request stands at `now`.
    pub fn state_at(&self, now: &Time) -> SecretState {
        if self.used_at.is_some() {
            SecretState::Sealed
        } else if *now >= self.expires_at {
            SecretState::Expired
        } else {
            SecretState::Pending
        }
    }
}

/// The `Secret` column: what the credential's secret is, as far as the operator can tell.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecretState {
    /// A sealed secret is stored and parses.
    Sealed,
    /// No secret yet; a seal request link is open.
    Pending,
    /// No secret; the seal request link expired unused (`kubectl mailcred request` again).
    Expired,
    /// The sealed secret is malformed, or there is neither a secret nor a request.
    Invalid,
}

impl SecretState {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretState::Sealed => "Sealed",
            SecretState::Pending => "Pending",
            SecretState::Expired => "Expired",
            SecretState::Invalid => "Invalid",
        }
    }
}
