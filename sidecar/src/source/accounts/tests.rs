//! The directory's answers and the drops a feed change causes (LocalKms, no peers).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mailcred_core::accounts::AccountDirectory;
use mailcred_core::binding::EncryptionContext;
use mailcred_core::crd::{KmsKeyRef, MailCredential};
use mailcred_core::kms::{KmsProvider, LocalKms};
use mailcred_core::testkit::TestCredential;
use mailcred_core::{DataKey, KmsError};

use super::super::SourceMetrics;
use super::super::metrics::{DropLabel, ResultLabel};
use super::{AccountSet, AccountSetConfig, AccountSetMetrics};

/// A LocalKms that counts Decrypt calls and takes `delay` for each (a KMS round trip).
pub(super) struct CountingKms {
    pub inner: LocalKms,
    pub calls: AtomicUsize,
    pub delay: Duration,
}

#[async_trait]
impl KmsProvider for CountingKms {
    async fn decrypt_data_key(
        &self,
        key: &KmsKeyRef,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.inner.decrypt_data_key(key, wrapped, context).await
    }
}

impl CountingKms {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

pub(super) struct Fixture {
    pub set: Arc<AccountSet>,
    pub kms: Arc<CountingKms>,
    pub metrics: AccountSetMetrics,
}

pub(super) fn fixture(cache_size: usize, ttl: Duration, delay: Duration) -> Fixture {
    let metrics = AccountSetMetrics {
        source: SourceMetrics::default(),
        ..AccountSetMetrics::default()
    };
    let set = AccountSet::new(
        AccountSetConfig {
            set: "crm".into(),
            namespace: "ns".into(),
            service_account: "app".into(),
            ttl,
            cache_size,
        },
        metrics.clone(),
    );
    let kms = Arc::new(CountingKms {
        inner: LocalKms::generate().unwrap(),
        calls: AtomicUsize::new(0),
        delay,
    });
    set.attach(kms.clone(), None);
    Fixture { set, kms, metrics }
}

impl Fixture {
    /// Account `name` of set crm, usable by ServiceAccount app, sealed with `password`.
    pub async fn account(&self, name: &str, password: &str) -> MailCredential {
        TestCredential::new("ns", name)
            .account_set("crm")
            .sealed(&self.kms.inner, password)
            .await
    }

    pub fn drops(&self, reason: &'static str) -> u64 {
        self.metrics
            .source
            .cache_drops
            .get_or_create(&DropLabel { reason })
            .get()
    }

    pub fn decrypts_ok(&self) -> u64 {
        self.metrics
            .source
            .kms_decrypts
            .get_or_create(&ResultLabel { result: "ok" })
            .get()
    }

    /// The password account `name` hands out now.
    pub async fn password(&self, name: &str) -> Result<String, mailcred_core::Error> {
        let c = self.set.credential(name).await?;
        Ok(c.auth.password().expect("a password").expose().to_owned())
    }
}

pub(super) fn at(offset_ms: i64) -> Time {
    let now = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    Time(k8s_openapi::jiff::Timestamp::from_millisecond(now + offset_ms).unwrap())
}

#[tokio::test]
async fn only_listed_unexpired_accounts_of_the_set_exist_for_the_pod() {
    let f = fixture(10, Duration::from_secs(60), Duration::ZERO);
    let ok = f.account("alice", "pw-a").await;
    let mut other_sa = f.account("bob", "pw-b").await;
    other_sa.spec.access.service_accounts = vec!["someone-else".into()];
    let mut expired = f.account("carol", "pw-c").await;
    expired.spec.expires_at = Some(at(-1000));
    let mut living = f.account("dave", "pw-d").await;
    living.spec.expires_at = Some(at(3_600_000));
    let other_set = TestCredential::new("ns", "erin")
        .account_set("billing")
        .sealed(&f.kms.inner, "pw-e")
        .await;
    let other_ns = TestCredential::new("elsewhere", "frank")
        .account_set("crm")
        .sealed(&f.kms.inner, "pw-f")
        .await;
    assert!(!f.set.loaded());
    f.set
        .replace_all(vec![ok, other_sa, expired, living, other_set, other_ns]);
    assert!(f.set.loaded());
    assert_eq!(f.set.len(), 4, "the other set and namespace are not loaded");
    assert_eq!(f.metrics.accounts.get(), 4);
    for (name, exists) in [
        ("alice", true),
        ("bob", false),
        ("carol", false),
        ("dave", true),
        ("erin", false),
        ("frank", false),
        ("nobody", false),
        ("", false),
    ] {
        assert_eq!(f.set.account(name).is_some(), exists, "{name}");
    }
    let alice = f.set.account("alice").unwrap();
    assert_eq!(alice.outline().unwrap().id, "ns/alice");
    let c = alice.credential().await.unwrap();
    assert_eq!(c.auth.password().unwrap().expose(), "pw-a");
    assert_eq!(f.password("dave").await.unwrap(), "pw-d");
    assert!(f.set.credential("bob").await.is_err());
    assert!(f.set.credential("carol").await.is_err());
    assert_eq!(f.kms.calls(), 2, "refused accounts are never decrypted");
    assert!(f.set.last_used("alice").is_some());
    assert!(
        f.set.last_used("bob").is_none(),
        "a refused attempt is no use"
    );
    assert!(f.set.last_used("nobody").is_none());
}

#[tokio::test]
async fn revoked_deleted_resealed_and_expired_accounts_lose_their_plaintext_at_once() {
    let f = fixture(10, Duration::from_secs(60), Duration::ZERO);
    let names = ["revoked", "deleted", "resealed", "expired"];
    let mut resources = Vec::new();
    for name in names {
        resources.push(f.account(name, "old").await);
    }
    f.set.replace_all(resources.clone());
    let handles: Vec<_> = names.iter().map(|n| f.set.account(n).unwrap()).collect();
    let mut weaks = Vec::new();
    for h in &handles {
        weaks.push(Arc::downgrade(&h.credential().await.unwrap()));
    }
    assert_eq!(f.set.cached_plaintexts(), 4);

    let mut revoked = resources[0].clone();
    revoked.spec.access.service_accounts = vec!["other".into()];
    f.set.apply(revoked);
    f.set.remove("deleted");
    f.set.apply(f.account("resealed", "new").await);
    let mut expired = resources[3].clone();
    expired.spec.expires_at = Some(at(-1));
    f.set.apply(expired);

    for (weak, name) in weaks.iter().zip(names) {
        assert!(weak.upgrade().is_none(), "{name}: plaintext still alive");
    }
    assert_eq!(f.set.cached_plaintexts(), 0);
    assert_eq!(f.metrics.cached_plaintexts.get(), 0);
    for reason in ["access_revoked", "deleted", "resealed", "expired"] {
        assert_eq!(f.drops(reason), 1, "{reason}");
    }
    // Handles taken before the change refuse too; the re-sealed one opens its new secret.
    assert!(handles[0].credential().await.is_err());
    assert!(handles[1].credential().await.is_err());
    assert!(handles[3].credential().await.is_err());
    assert!(handles[0].outline().is_none());
    let fresh = handles[2].credential().await.unwrap();
    assert_eq!(fresh.auth.password().unwrap().expose(), "new");
    for name in ["revoked", "deleted", "expired"] {
        assert!(f.set.account(name).is_none(), "{name}");
    }
}

#[tokio::test]
async fn a_policy_edit_reissues_without_kms_and_a_relist_drops_what_is_gone() {
    let f = fixture(10, Duration::from_secs(60), Duration::ZERO);
    let a = f.account("a", "pw").await;
    let b = f.account("b", "pw-b").await;
    f.set.replace_all(vec![a.clone(), b]);
    let first = f.set.credential("a").await.unwrap();
    let b_weak = Arc::downgrade(&f.set.credential("b").await.unwrap());
    let mut edited = a.clone();
    edited.spec.policy.smtp.max_recipients = 3;
    f.set.apply(edited.clone());
    let second = f.set.credential("a").await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(second.policy.smtp.max_recipients, 3);
    assert_eq!(f.set.outline("a").unwrap().policy.smtp.max_recipients, 3);
    assert_eq!(f.kms.calls(), 2, "the policy edit made no KMS call");
    // A re-list without b: b and its plaintext go.
    f.set.replace_all(vec![edited]);
    assert!(b_weak.upgrade().is_none());
    assert!(f.set.account("b").is_none());
    assert_eq!(f.drops("deleted"), 1);
    // The label changed to another set: out of this one.
    let mut moved = f.account("a", "pw").await;
    moved.metadata.labels.as_mut().unwrap().insert(
        mailcred_core::accounts::ACCOUNT_SET_LABEL.into(),
        "other".into(),
    );
    f.set.apply(moved);
    assert!(f.set.account("a").is_none());
    assert_eq!(f.set.len(), 0);
}
