//! Prometheus metrics of the IMAP proxy, registered into the runtime's registry.

use mailcred_core::metrics::zero_initialise;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::outcome::{AccountLogin, Outcome, Reason};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: &'static str,
}

/// Cheap to clone: every field is an `Arc` inside.
#[derive(Clone)]
pub struct ImapMetrics {
    pub sessions: Family<OutcomeLabels, Counter>,
    pub active_sessions: Gauge,
    pub commands: Family<CommandLabels, Counter>,
    pub denials: Family<DenialLabels, Counter>,
    pub bytes: Family<DirectionLabels, Counter>,
    pub upstream_login_seconds: Histogram,
    pub session_seconds: Histogram,
    /// Logins upstream refused (NO/BAD to LOGIN or AUTHENTICATE, or LOGINDISABLED).
    pub upstream_auth_failures: Counter,
    /// Account-set mode: the applications' logins by outcome (no account label: bounded).
    pub account_logins: Family<OutcomeLabels, Counter>,
}

impl ImapMetrics {
    /// Creates the metrics and registers them under `mailcred_imap_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        let sub = registry.sub_registry_with_prefix("mailcred_imap");
        sub.register(
            "sessions",
            "Application IMAP sessions by outcome",
            metrics.sessions.clone(),
        );
        sub.register(
            "active_sessions",
            "Application IMAP sessions open now",
            metrics.active_sessions.clone(),
        );
        sub.register(
            "commands",
            "Application IMAP commands by command",
            metrics.commands.clone(),
        );
        sub.register(
            "denials",
            "Commands refused by policy or limits, by reason",
            metrics.denials.clone(),
        );
        sub.register(
            "bytes",
            "Bytes relayed, by direction (to_app, to_upstream)",
            metrics.bytes.clone(),
        );
        sub.register(
            "upstream_login_seconds",
            "Time to connect, secure and log in upstream",
            metrics.upstream_login_seconds.clone(),
        );
        sub.register(
            "session_seconds",
            "Length of application sessions",
            metrics.session_seconds.clone(),
        );
        sub.register(
            "upstream_auth_failures",
            "Upstream refused the credential's login (wrong password, locked account, no mechanism)",
            metrics.upstream_auth_failures.clone(),
        );
        sub.register(
            "account_logins",
            "Account-set mode: applications' LOGIN / AUTHENTICATE by outcome (accepted, wrong_token, unknown_account, wrong_authzid)",
            metrics.account_logins.clone(),
        );
        metrics.zero_initialise();
        metrics
    }

    /// Every fixed label value present at 0 from the start, so rate() sees the first event.
    fn zero_initialise(&self) {
        let outcome = |o: &'static str| OutcomeLabels { outcome: o };
        zero_initialise(&self.sessions, Outcome::FIXED.map(|o| outcome(o.as_str())));
        zero_initialise(
            &self.denials,
            Reason::FIXED.map(|r| DenialLabels { reason: r.as_str() }),
        );
        zero_initialise(
            &self.account_logins,
            AccountLogin::ALL.map(|o| outcome(o.as_str())),
        );
        zero_initialise(
            &self.bytes,
            ["to_app", "to_upstream"].map(|direction| DirectionLabels { direction }),
        );
    }

    /// For tests and callers that do not export metrics.
    pub fn unregistered() -> Self {
        Self {
            sessions: Family::default(),
            active_sessions: Gauge::default(),
            commands: Family::default(),
            denials: Family::default(),
            bytes: Family::default(),
            upstream_login_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            session_seconds: Histogram::new(exponential_buckets(0.01, 4.0, 12)),
            upstream_auth_failures: Counter::default(),
            account_logins: Family::default(),
        }
    }
}
