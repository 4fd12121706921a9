//! Token request counters, registered by the sidecar next to its own metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Both labels are bounded: the grant label and `ok` or a `TokenError::metric_label`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    pub grant: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct TokenMetrics {
    pub requests: Family<RequestLabel, Counter>,
}

impl TokenMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.sub_registry_with_prefix("mailcred").register(
            "oauth_token_requests",
            "OAuth token endpoint requests by grant and outcome (ok or an error label)",
            m.requests.clone(),
        );
        m
    }

    pub fn requested(&self, grant: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabel { grant, outcome })
            .inc();
    }

    /// Requests counted so far with `outcome` (all grants): tests and the bench.
    pub fn count(&self, outcome: &'static str) -> u64 {
        ["refresh_token", "client_credentials", "service_account"]
            .iter()
            .map(|grant| {
                self.requests
                    .get(&RequestLabel { grant, outcome })
                    .map_or(0, |c| c.get())
            })
            .sum()
    }
}
