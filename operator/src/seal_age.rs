//! Seal age and retired keys (issue 16): when the operator first saw the current sealed
//! secret, which key it names, whether `--retired-kms-key` marks that key retired, and the two
//! gauges derived from the controller's cache at scrape time.
//!
//! The envelope carries no timestamp (adding one would change the format), so the age is
//! measured from the first reconcile that saw the current fingerprint: `status.sealedAt` is
//! kept while the fingerprint stays and reset when it changes (a re-seal or a re-encrypt).

use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use mailcred_core::crd::{MailCredential, MailCredentialSpec, MailCredentialStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::status::{DesiredCondition, truncate};

/// Condition type: True while the sealed secret names a retired key.
pub const KEY_RETIRED: &str = "KeyRetired";
pub const SEALED_WITH_RETIRED_KEY: &str = "SealedWithRetiredKey";
pub const SEALED_WITH_CURRENT_KEY: &str = "SealedWithCurrentKey";
pub const SEAL_AGE_METRIC: &str = "mailcred_credential_seal_age_seconds";
pub const KEY_RETIRED_METRIC: &str = "mailcred_credential_key_retired";
/// Retired keys accepted on the command line; a key list longer than this is a mistake.
pub const MAX_RETIRED_KEYS: usize = 64;

/// The keys the configuration marks retired (`--retired-kms-key`, Helm
/// `operator.retiredKmsKeys`). A key matches by exact id, or by the key id at the end of a key
/// ARN (`arn:aws:kms:REGION:ACCOUNT:key/ID` matches `ID` and the other way round), because the
/// same key may be sealed to by ARN or by bare id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetiredKeys(Vec<String>);

impl RetiredKeys {
    pub fn new(keys: Vec<String>) -> Self {
        Self(keys)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The configured entry that `key_id` matches, if any.
    pub fn matching(&self, key_id: &str) -> Option<&str> {
        let tail = key_tail(key_id);
        self.0
            .iter()
            .find(|k| k.as_str() == key_id || key_tail(k) == tail)
            .map(String::as_str)
    }
}

/// `ID` of `arn:aws:kms:…:key/ID`; anything else (alias, local fingerprint, bare id) as is.
fn key_tail(key_id: &str) -> &str {
    match key_id.strip_prefix("arn:") {
        Some(rest) => rest.rsplit_once(":key/").map_or(key_id, |(_, id)| id),
        None => key_id,
    }
}

/// What the controller reports about the current seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seal {
    /// The fingerprint of a sealed secret that parses (`None`: unsealed or invalid).
    pub fingerprint: Option<String>,
    /// `sealedSecret.kms.keyId` when the secret parses.
    pub kms_key_id: Option<String>,
    /// The `--retired-kms-key` entry the key matches.
    pub retired_by: Option<String>,
}

impl Seal {
    pub fn new(
        spec: &MailCredentialSpec,
        fingerprint: Option<&str>,
        retired: &RetiredKeys,
    ) -> Self {
        let kms_key_id = fingerprint
            .and(spec.sealed_secret.as_ref())
            .map(|s| s.kms.key_id.clone());
        let retired_by = kms_key_id
            .as_deref()
            .and_then(|k| retired.matching(k))
            .map(str::to_string);
        Self {
            fingerprint: fingerprint.map(str::to_string),
            kms_key_id,
            retired_by,
        }
    }

    /// `status.sealedAt`: kept from `current` while the fingerprint is the same, else `now`.
    pub fn sealed_at(&self, current: Option<&MailCredentialStatus>, now: &Time) -> Option<Time> {
        let fingerprint = self.fingerprint.as_deref()?;
        let kept = current
            .filter(|s| s.sealed_secret_fingerprint.as_deref() == Some(fingerprint))
            .and_then(|s| s.sealed_at.clone());
        Some(kept.unwrap_or_else(|| now.clone()))
    }

    /// `KeyRetired`: True with a message that says what to run; False once a retired seal was
    /// replaced. Absent for credentials that never used a retired key, so a cluster without
    /// `--retired-kms-key` sees no extra condition or Event.
    pub fn condition(
        &self,
        name: &str,
        current: Option<&MailCredentialStatus>,
    ) -> Option<DesiredCondition> {
        if let (Some(key), Some(entry)) = (&self.kms_key_id, &self.retired_by) {
            return Some(DesiredCondition {
                type_: KEY_RETIRED,
                status: true,
                reason: SEALED_WITH_RETIRED_KEY.into(),
                message: truncate(
                    format!(
                        "the sealed secret uses KMS key {key}, which the operator's configuration marks retired (--retired-kms-key {entry}); move it with `kubectl mailcred reencrypt {name} --to-kms-key NEW-KEY-ARN` (needs decrypt permission on the old key) or re-seal it"
                    ),
                    1024,
                ),
            });
        }
        let had = current.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == KEY_RETIRED));
        had.then(|| DesiredCondition {
            type_: KEY_RETIRED,
            status: false,
            reason: SEALED_WITH_CURRENT_KEY.into(),
            message: match &self.kms_key_id {
                Some(key) => format!("the sealed secret uses KMS key {key}, which is not retired"),
                None => "no valid sealed secret: nothing is sealed with a retired key".into(),
            },
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabels {
    namespace: String,
    name: String,
}

/// The gauges, computed from the controller's cache on every scrape: a deleted credential
/// leaves the cache and so the output (no series outlives its object), and the count of series
/// is the count of credentials the controller watches. Only the replica running the
/// controller (the leader) has a cache, so exactly one replica reports them.
#[derive(Clone, Default)]
pub struct SealAges {
    store: Arc<Mutex<Option<Store<MailCredential>>>>,
    now: Option<fn() -> Time>,
}

impl std::fmt::Debug for SealAges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealAges")
    }
}

impl SealAges {
    /// Gauges whose clock is `now` (tests).
    pub fn with_clock(now: fn() -> Time) -> Self {
        Self {
            now: Some(now),
            ..Self::default()
        }
    }

    /// Reports from `store` (a controller term starts) or nothing (it ended).
    pub fn watch(&self, store: Option<Store<MailCredential>>) {
        *self.store.lock().unwrap_or_else(|p| p.into_inner()) = store;
    }

    fn now(&self) -> Time {
        self.now
            .map_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()), |f| f())
    }

    /// (labels, age in seconds, retired 0/1) per cached credential with a `sealedAt`.
    fn rows(&self) -> Vec<(CredentialLabels, i64, i64)> {
        let Some(store) = self.store.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Vec::new();
        };
        let now = self.now().0.as_second();
        let mut rows: Vec<_> = store
            .state()
            .iter()
            .filter_map(|c| {
                let status = c.status.as_ref()?;
                let sealed_at = status.sealed_at.as_ref()?.0.as_second();
                let retired = status
                    .conditions
                    .iter()
                    .any(|k| k.type_ == KEY_RETIRED && k.status == "True");
                let labels = CredentialLabels {
                    namespace: c.namespace().unwrap_or_default(),
                    name: c.name_any(),
                };
                Some((labels, (now - sealed_at).max(0), i64::from(retired)))
            })
            .collect();
        rows.sort_by(|a, b| (&a.0.namespace, &a.0.name).cmp(&(&b.0.namespace, &b.0.name)));
        rows
    }
}

impl Collector for SealAges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.rows();
        let gauges = [
            (
                SEAL_AGE_METRIC,
                "Seconds since the operator first saw the credential's current sealed secret (status.sealedAt)",
            ),
            (
                KEY_RETIRED_METRIC,
                "1 while the credential is sealed with a key the operator's --retired-kms-key marks retired",
            ),
        ];
        for (i, (name, help)) in gauges.into_iter().enumerate() {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (labels, age, retired) in &rows {
                let value = if i == 0 { *age } else { *retired };
                ConstGauge::new(value).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "seal_age_tests.rs"]
mod tests;
