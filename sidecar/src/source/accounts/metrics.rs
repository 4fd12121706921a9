//! Metrics of an account set. Bounded with 10,000 accounts: no per-account label. Decrypts,
//! cache hits and drops (by reason) are the single source's families
//! (`mailcred_kms_decrypts_total`, `mailcred_credential_cache_hits_total`,
//! `mailcred_credential_cache_drops_total{reason}`), so dashboards work in both modes.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::super::SourceMetrics;

#[derive(Clone, Debug, Default)]
pub struct AccountSetMetrics {
    /// Accounts loaded (outlines), whether or not this pod may use them.
    pub accounts: Gauge,
    /// Decrypted plaintexts held by the cache now.
    pub cached_plaintexts: Gauge,
    pub source: SourceMetrics,
}

impl AccountSetMetrics {
    /// Registers the gauges next to `source` (registered by the caller, once per sidecar).
    pub fn register(registry: &mut Registry, source: SourceMetrics) -> Self {
        let m = Self {
            source,
            ..Self::default()
        };
        let r = registry.sub_registry_with_prefix("mailcred");
        r.register(
            "account_set_accounts",
            "MailCredentials of the account set loaded (outlines, no plaintext)",
            m.accounts.clone(),
        );
        r.register(
            "account_set_cached_plaintexts",
            "Decrypted account passwords held in the bounded cache",
            m.cached_plaintexts.clone(),
        );
        m
    }
}
