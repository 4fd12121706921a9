//! Prometheus metrics (prometheus-client, OpenMetrics text on /metrics). Labels are bounded:
//! results and outcomes are fixed words or `Error::metric_label()`, never names.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use mailcred_core::metrics::zero_initialise;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// Every metric the operator exports.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub status_patches: Counter,
    pub admissions: Family<OutcomeLabels, Counter>,
    pub admission_duration: Histogram,
    pub injections: Counter,
    pub app_token_kept: Counter,
    pub leader: Gauge<i64, AtomicI64>,
    pub webhook_cert_expiry: Gauge<i64, AtomicI64>,
    /// `mailcred_credential_seal_age_seconds` and `mailcred_credential_key_retired`, read from
    /// the controller's cache at scrape time.
    pub seal_ages: crate::seal_age::SealAges,
    /// MailCredentials deleted because their lifetime (spec.expiresAt) ended (lifetime.rs).
    pub expired_deleted: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            reconcile_duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            status_patches: Counter::default(),
            admissions: Family::default(),
            admission_duration: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 2.5,
            ]),
            injections: Counter::default(),
            app_token_kept: Counter::default(),
            leader: Gauge::default(),
            webhook_cert_expiry: Gauge::default(),
            seal_ages: crate::seal_age::SealAges::default(),
            expired_deleted: Counter::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under the `mailcred_operator` prefix.
    pub fn register(self, registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("mailcred_operator");
        r.register(
            "reconciles",
            "Reconciles of MailCredentials by result (ok or an error label)",
            self.reconciles.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time spent reconciling one MailCredential",
            self.reconcile_duration.clone(),
        );
        r.register(
            "status_patches",
            "Status patches sent (only when the status changed)",
            self.status_patches.clone(),
        );
        r.register(
            "admission_requests",
            "Admission reviews by outcome: injected, unchanged, skipped, denied, admitted_uninjected, invalid",
            self.admissions.clone(),
        );
        r.register(
            "admission_duration_seconds",
            "Time to answer one admission review",
            self.admission_duration.clone(),
        );
        r.register(
            "injections",
            "Pods that received the sidecar",
            self.injections.clone(),
        );
        r.register(
            "app_token_kept",
            "Pods injected with mailcred.io/app-token: keep, whose app containers keep the ServiceAccount token and cloud identity",
            self.app_token_kept.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the controller Lease",
            self.leader.clone(),
        );
        r.register(
            "webhook_cert_expiry_timestamp_seconds",
            "Unix time the webhook serving certificate expires",
            self.webhook_cert_expiry.clone(),
        );
        r.register(
            "expired_deleted",
            "MailCredentials deleted because their lifetime (spec.expiresAt) ended",
            self.expired_deleted.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: mailcred_core::GIT_COMMIT,
            })
            .set(1);
        // Unprefixed: these describe credentials, not the operator process.
        registry.register_collector(Box::new(self.seal_ages.clone()));
        registry.register(
            "mailcred_build_info",
            "The operator's version and commit (always 1)",
            build_info,
        );
        // Every label value present from the start, so rate() sees the first event.
        zero_initialise(
            &self.admissions,
            crate::webhook::admission::Outcome::ALL.map(|o| OutcomeLabels { outcome: o.label() }),
        );
        zero_initialise(&self.reconciles, [ResultLabels { result: "ok" }]);
        self
    }

    pub fn reconciled(&self, result: &'static str, took: Duration) {
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    pub fn admitted(&self, outcome: &'static str, took: Duration) {
        self.admissions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.admission_duration.observe(took.as_secs_f64());
    }
}
