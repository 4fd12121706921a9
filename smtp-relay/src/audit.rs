//! One audit line per message, on the `audit` tracing target. Envelope facts and the outcome
//! only: never content, never headers, never the secret.

use std::time::Duration;

/// What happened to one message (or attempted message).
#[derive(Debug)]
pub struct AuditRecord<'a> {
    pub credential: &'a str,
    pub pod: &'a str,
    pub sender: &'a str,
    pub recipients: usize,
    pub recipients_refused: u32,
    pub size: u64,
    pub upstream_code: Option<u16>,
    pub latency: Duration,
    /// relayed, policy_denied, upstream_rejected, temporary_failure, invalid_message
    pub outcome: &'static str,
    /// The policy rule or failure label, when there is one.
    pub reason: Option<&'a str>,
}

impl AuditRecord<'_> {
    pub fn emit(&self) {
        tracing::info!(
            target: "audit",
            protocol = "smtp",
            credential = self.credential,
            pod = self.pod,
            sender = self.sender,
            recipients = self.recipients,
            recipients_refused = self.recipients_refused,
            size = self.size,
            upstream_code = self.upstream_code,
            latency_ms = self.latency.as_secs_f64() * 1000.0,
            outcome = self.outcome,
            reason = self.reason,
            "message"
        );
    }
}
