//! Least-privilege policy the sidecar enforces. Defaults deny what an application rarely needs:
//! IMAP is read-only on INBOX, and mail may only be sent as the account itself.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Both protocols' rules.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub smtp: SmtpPolicy,
    #[serde(default)]
    pub imap: ImapPolicy,
}

/// What an application may send.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SmtpPolicy {
    /// Sending through this credential at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Envelope senders and From/Sender header addresses allowed: `user@example.com` or
    /// `*@example.com`, case-insensitive. Empty means only the credential's username.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub allowed_senders: Vec<String>,
    /// Recipients allowed: `user@example.com`, `*@example.com` or `*`. Empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub allowed_recipients: Vec<String>,
    /// Recipients per message.
    #[serde(default = "default_max_recipients")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_recipients: u32,
    /// Message size in bytes, advertised to the application as ESMTP SIZE.
    #[serde(default = "default_max_message_bytes")]
    #[schemars(range(min = 1024, max = 157286400))]
    pub max_message_bytes: u64,
    /// Per-credential send rates (token buckets); unset means unlimited.
    #[serde(default)]
    pub rate_limits: RateLimits,
}

impl Default for SmtpPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_senders: Vec::new(),
            allowed_recipients: Vec::new(),
            max_recipients: default_max_recipients(),
            max_message_bytes: default_max_message_bytes(),
            rate_limits: RateLimits::default(),
        }
    }
}

/// Token-bucket rates, per credential and sidecar.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub messages_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub messages_per_hour: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub recipients_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub recipients_per_hour: Option<u32>,
}

/// What an application may read or change.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!has(self.seenOnly) || !self.seenOnly || !has(self.readOnly) || self.readOnly").message("seenOnly: true narrows readOnly: true to allow setting and clearing \\Seen; with readOnly: false every change is allowed already, so remove seenOnly or set readOnly: true"))]
#[serde(rename_all = "camelCase")]
pub struct ImapPolicy {
    /// IMAP access through this credential at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// SELECT becomes EXAMINE; STORE, COPY, MOVE, APPEND, EXPUNGE, CREATE, DELETE, RENAME... refused.
    #[serde(default = "default_true")]
    pub read_only: bool,
    /// With `readOnly: true`: let the application mark messages read and unread and nothing
    /// else (the IMAP ACL `s` right). SELECT stays writable, `STORE +FLAGS/-FLAGS (\Seen)`
    /// passes, every other change is refused and CLOSE becomes UNSELECT (no implicit expunge).
    /// For clients that cannot open a mailbox read-only (fetchmail, some imaplib code).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seen_only: bool,
    /// Mailbox names or patterns (`*` matches any run of characters, hierarchy included).
    #[serde(default = "default_mailboxes")]
    #[schemars(length(min = 1, max = 256))]
    pub allowed_mailboxes: Vec<String>,
}

impl Default for ImapPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            read_only: true,
            seen_only: false,
            allowed_mailboxes: default_mailboxes(),
        }
    }
}

/// How much an IMAP application may change, from [`ImapPolicy::access`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ImapAccess {
    /// Nothing: mailboxes open read-only (EXAMINE), every change is refused.
    ReadOnly,
    /// Only the `\Seen` flag, set or cleared.
    SeenOnly,
    /// Everything the allowed mailboxes permit upstream.
    ReadWrite,
}

impl ImapPolicy {
    /// The access level. The contradiction `readOnly: false, seenOnly: true` (refused by the
    /// CRD's CEL rule and the operator) reads as the stricter `SeenOnly`.
    pub fn access(&self) -> ImapAccess {
        match (self.read_only, self.seen_only) {
            (true, false) => ImapAccess::ReadOnly,
            (_, true) => ImapAccess::SeenOnly,
            (false, false) => ImapAccess::ReadWrite,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_max_recipients() -> u32 {
    50
}
fn default_max_message_bytes() -> u64 {
    25 * 1024 * 1024
}
fn default_mailboxes() -> Vec<String> {
    vec!["INBOX".to_string()]
}
