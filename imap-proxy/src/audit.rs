//! Audit records: one JSON line per session and one per denial, through `tracing` with target
//! `audit` (the sidecar's audit layer writes that target whatever RUST_LOG says, and writes
//! `mailboxes` and `commands` as JSON values; schema: docs/audit.md). Never message content,
//! never a secret, never the application's login words.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::outcome::{Outcome, Reason};

/// Distinct mailboxes recorded per session; beyond it, only the count grows.
const MAX_MAILBOXES: usize = 64;
/// Mailbox names are cut to this many characters in audit lines.
const MAX_NAME_CHARS: usize = 200;

pub struct SessionAudit {
    pub started: Instant,
    pub credential: Option<String>,
    pub upstream_user: Option<String>,
    pub mailboxes: BTreeSet<String>,
    pub mailboxes_dropped: u64,
    pub commands: BTreeMap<&'static str, u64>,
    pub denials: u64,
}

impl SessionAudit {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            credential: None,
            upstream_user: None,
            mailboxes: BTreeSet::new(),
            mailboxes_dropped: 0,
            commands: BTreeMap::new(),
            denials: 0,
        }
    }

    pub fn command(&mut self, label: &'static str) {
        *self.commands.entry(label).or_default() += 1;
    }

    pub fn mailbox_opened(&mut self, name: &str) {
        if self.mailboxes.len() < MAX_MAILBOXES {
            self.mailboxes.insert(clip(name));
        } else if !self.mailboxes.contains(name) {
            self.mailboxes_dropped += 1;
        }
    }

    pub fn emit(&self, pod: &str, outcome: Outcome, bytes_to_app: u64, bytes_from_app: u64) {
        let mailboxes = serde_json::to_string(&self.mailboxes).unwrap_or_default();
        let commands = serde_json::to_string(&self.commands).unwrap_or_default();
        tracing::info!(
            target: "audit",
            protocol = "imap",
            event = "imap_session",
            credential = self.credential.as_deref().unwrap_or(""),
            pod,
            upstream_user = self.upstream_user.as_deref().unwrap_or(""),
            outcome = outcome.as_str(),
            duration_ms = self.started.elapsed().as_millis() as u64,
            mailboxes = %mailboxes,
            mailboxes_dropped = self.mailboxes_dropped,
            commands = %commands,
            denials = self.denials,
            bytes_to_app,
            bytes_from_app,
        );
    }

    pub fn denial(&mut self, pod: &str, command: &str, reason: Reason, mailbox: Option<&str>) {
        self.denials += 1;
        tracing::info!(
            target: "audit",
            protocol = "imap",
            event = "imap_denied",
            credential = self.credential.as_deref().unwrap_or(""),
            pod,
            outcome = "denied",
            command,
            reason = reason.as_str(),
            mailbox = mailbox.map(clip).unwrap_or_default(),
        );
    }
}

fn clip(name: &str) -> String {
    name.chars().take(MAX_NAME_CHARS).collect()
}
