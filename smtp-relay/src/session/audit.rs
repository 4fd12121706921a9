//! One audit line per message, on the `audit` tracing target, and the message metrics.
//! Envelope facts and the outcome only: never content, never headers, never the secret.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailcred_core::credential::UsableCredential;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::state::Transaction;
use crate::metrics::{OutcomeLabel, RuleLabel};
use crate::outcome::{Outcome, Reason};
use crate::policy::Rule;
use crate::upstream::Upstream;

/// What happened to one message (or attempted message).
#[derive(Debug)]
struct AuditRecord<'a> {
    credential: &'a str,
    pod: &'a str,
    sender: &'a str,
    recipients: usize,
    recipients_refused: u32,
    size: u64,
    upstream_code: Option<u16>,
    latency: Duration,
    outcome: Outcome,
    /// The policy rule or failure class, when there is one.
    reason: Option<Reason>,
}

impl AuditRecord<'_> {
    fn emit(&self) {
        tracing::info!(
            target: "audit",
            protocol = "smtp",
            event = "smtp_message",
            credential = self.credential,
            pod = self.pod,
            sender = self.sender,
            recipients = self.recipients,
            recipients_refused = self.recipients_refused,
            size = self.size,
            upstream_code = self.upstream_code,
            latency_ms = self.latency.as_secs_f64() * 1000.0,
            outcome = self.outcome.as_str(),
            reason = self.reason.map(Reason::as_str),
            "message"
        );
    }
}

impl<U: Upstream, S: AsyncRead + AsyncWrite + Unpin> Session<'_, U, S> {
    pub(super) fn deny(&self, rule: Rule) {
        self.shared
            .metrics
            .policy_denials
            .get_or_create(&RuleLabel {
                rule: rule.as_str(),
            })
            .inc();
    }

    /// Upstream refused the credential's login: nothing the application can fix, so it is an
    /// ERROR for whoever operates the pod, with the reply code (the text may echo the secret).
    pub(super) fn upstream_auth_failed(&self, credential: &UsableCredential, code: Option<u16>) {
        self.shared.metrics.upstream_auth_failures.inc();
        tracing::error!(
            credential = %credential.id(),
            username = %credential.username,
            protocol = "smtp",
            reply_code = code,
            "the upstream refused the credential's login: re-seal with the right password, or check the account"
        );
    }

    pub(super) fn count(&self, outcome: Outcome) {
        self.shared
            .metrics
            .messages
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// A MAIL that opened no transaction. Temporary failures are counted as messages; a
    /// policy refusal at MAIL is counted by its rule only.
    pub(super) fn refused_at_mail(
        &self,
        sender: &str,
        outcome: Outcome,
        reason: Reason,
        credential: Option<&Arc<UsableCredential>>,
        started: Instant,
    ) {
        if outcome != Outcome::PolicyDenied {
            self.count(outcome);
        }
        let id = match credential {
            Some(c) => c.id(),
            None => self.audit_id(),
        };
        AuditRecord {
            credential: &id,
            pod: &self.shared.config.pod,
            sender,
            recipients: 0,
            recipients_refused: 0,
            size: 0,
            upstream_code: None,
            latency: started.elapsed(),
            outcome,
            reason: Some(reason),
        }
        .emit();
    }

    pub(super) fn audit_tx<T>(
        &self,
        tx: &Transaction<T>,
        size: u64,
        code: Option<u16>,
        outcome: Outcome,
        reason: Option<Reason>,
    ) {
        AuditRecord {
            credential: &tx.credential.id(),
            pod: &self.shared.config.pod,
            sender: &tx.sender,
            recipients: tx.recipients.len(),
            recipients_refused: tx.refused,
            size,
            upstream_code: code,
            latency: tx.started.elapsed(),
            outcome,
            reason,
        }
        .emit();
    }
}
