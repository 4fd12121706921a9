//! Prometheus metrics of the SMTP relay, registered into the sidecar's registry.

use mailcred_core::metrics::zero_initialise;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::outcome::{AccountAuth, Outcome};
use crate::policy::Rule;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountAuthLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug)]
pub struct RelayMetrics {
    pub messages: Family<OutcomeLabel, Counter>,
    pub policy_denials: Family<RuleLabel, Counter>,
    pub upstream_latency: Histogram,
    pub open_connections: Gauge,
    pub upstream_pools_built: Counter,
    /// Logins upstream refused (AUTH answered 5xx/4xx, or no mechanism offered).
    pub upstream_auth_failures: Counter,
    /// Account-set mode: the applications' AUTH by outcome (no account label: bounded).
    pub account_auth: Family<AccountAuthLabel, Counter>,
}

impl RelayMetrics {
    /// Creates the metrics and registers them under `mailcred_smtp_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            messages: Family::default(),
            policy_denials: Family::default(),
            // 1 ms .. ~33 s
            upstream_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            open_connections: Gauge::default(),
            upstream_pools_built: Counter::default(),
            upstream_auth_failures: Counter::default(),
            account_auth: Family::default(),
        };
        // Every label value present from the start: rate() and increase() see the first event.
        zero_initialise(
            &m.messages,
            Outcome::ALL.map(|o| OutcomeLabel {
                outcome: o.as_str(),
            }),
        );
        zero_initialise(
            &m.account_auth,
            AccountAuth::ALL.map(|o| AccountAuthLabel {
                outcome: o.as_str(),
            }),
        );
        zero_initialise(
            &m.policy_denials,
            Rule::ALL.map(|r| RuleLabel { rule: r.as_str() }),
        );
        let r = registry.sub_registry_with_prefix("mailcred_smtp");
        r.register(
            "messages",
            "Messages by outcome (relayed, policy_denied, upstream_rejected, temporary_failure, ...)",
            m.messages.clone(),
        );
        r.register(
            "policy_denials",
            "Policy refusals by rule",
            m.policy_denials.clone(),
        );
        r.register(
            "upstream_latency_seconds",
            "Time for the upstream server to accept or refuse one message",
            m.upstream_latency.clone(),
        );
        r.register(
            "open_connections",
            "Application connections open",
            m.open_connections.clone(),
        );
        r.register(
            "upstream_pools_built",
            "Upstream connection pools built (first use and each credential change)",
            m.upstream_pools_built.clone(),
        );
        r.register(
            "upstream_auth_failures",
            "Upstream refused the credential's login (wrong password, locked account, no AUTH)",
            m.upstream_auth_failures.clone(),
        );
        r.register(
            "account_auth",
            "Account-set mode: applications' AUTH by outcome (accepted, wrong_token, unknown_account, wrong_authzid)",
            m.account_auth.clone(),
        );
        m
    }

    /// Metrics that are not registered anywhere (tests, tools).
    pub fn unregistered() -> Self {
        Self::register(&mut Registry::default())
    }
}
