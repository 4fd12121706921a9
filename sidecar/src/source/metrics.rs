//! Metrics of the credential cache and KMS.

use mailcred_core::metrics::zero_initialise;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Why the cache let go of a decrypted password.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DropReason {
    /// The TTL ran out.
    Ttl,
    /// The MailCredential was deleted.
    Deleted,
    /// Its sealed secret, username or an endpoint changed (re-sealed).
    Resealed,
    /// The pod's ServiceAccount left spec.access.serviceAccounts.
    AccessRevoked,
    /// The MailCredential's lifetime (spec.expiresAt) ended (account sets).
    Expired,
    /// The account cache was full and this was its least recently used plaintext.
    Evicted,
}

impl DropReason {
    pub const ALL: [DropReason; 6] = [
        DropReason::Ttl,
        DropReason::Deleted,
        DropReason::Resealed,
        DropReason::AccessRevoked,
        DropReason::Expired,
        DropReason::Evicted,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Ttl => "ttl",
            DropReason::Deleted => "deleted",
            DropReason::Resealed => "resealed",
            DropReason::AccessRevoked => "access_revoked",
            DropReason::Expired => "expired",
            DropReason::Evicted => "evicted",
        }
    }

    /// Why, in words, for the log line.
    pub fn describe(self) -> &'static str {
        match self {
            DropReason::Ttl => "its TTL passed",
            DropReason::Deleted => "the MailCredential was deleted",
            DropReason::Resealed => "the MailCredential was re-sealed",
            DropReason::AccessRevoked => {
                "the pod's ServiceAccount is no longer in spec.access.serviceAccounts"
            }
            DropReason::Expired => "the MailCredential's lifetime (spec.expiresAt) ended",
            DropReason::Evicted => {
                "the account cache was full and it was the least recently used plaintext"
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct SourceMetrics {
    pub kms_decrypts: Family<ResultLabel, Counter>,
    pub cache_hits: Counter,
    pub cache_expiries: Counter,
    pub cache_drops: Family<DropLabel, Counter>,
}

impl SourceMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("mailcred");
        r.register(
            "kms_decrypts",
            "Sealed-secret decryptions by result (ok or error label)",
            m.kms_decrypts.clone(),
        );
        r.register(
            "credential_cache_hits",
            "Credential requests answered from the in-memory cache",
            m.cache_hits.clone(),
        );
        r.register(
            "credential_cache_expiries",
            "Decrypted passwords dropped because their TTL ran out",
            m.cache_expiries.clone(),
        );
        r.register(
            "credential_cache_drops",
            "Decrypted passwords dropped, by reason (ttl, deleted, resealed, access_revoked, expired, evicted)",
            m.cache_drops.clone(),
        );
        // Every label value at 0 from the start: the first KMS error shows in rate().
        let results =
            std::iter::once("ok").chain(mailcred_core::ERROR_METRIC_LABELS.iter().copied());
        zero_initialise(
            &m.kms_decrypts,
            results.map(|result| ResultLabel { result }),
        );
        zero_initialise(
            &m.cache_drops,
            DropReason::ALL.map(|r| DropLabel { reason: r.label() }),
        );
        m
    }

    pub fn dropped(&self, reason: DropReason) {
        if reason == DropReason::Ttl {
            self.cache_expiries.inc();
        }
        self.cache_drops
            .get_or_create(&DropLabel {
                reason: reason.label(),
            })
            .inc();
    }

    pub fn decrypted(&self, result: &'static str) {
        self.kms_decrypts
            .get_or_create(&ResultLabel { result })
            .inc();
    }
}
