use std::sync::Arc;
use std::time::Duration;

use mailcred_core::crd::MailCredential;
use mailcred_core::credential::CredentialSource;
use mailcred_core::kms::{KmsProviders, LocalKms};
use mailcred_core::testkit::TestCredential;
use tokio::sync::watch;

use super::{CachedCredentialSource, SourceMetrics};

async fn sealed_resource(kms: &LocalKms, name: &str, password: &str) -> MailCredential {
    TestCredential::new("ns", name).sealed(kms, password).await
}

fn source(
    kms: &LocalKms,
    first: MailCredential,
    ttl: Duration,
    sa: Option<&str>,
) -> (
    CachedCredentialSource,
    watch::Sender<Option<Arc<MailCredential>>>,
    SourceMetrics,
) {
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::remove_file(key.path()).unwrap();
    kms.write_new_key_file(key.path()).unwrap();
    let providers = KmsProviders {
        local: Some(LocalKms::from_file(key.path()).unwrap()),
        ..Default::default()
    };
    let (tx, rx) = watch::channel(Some(Arc::new(first)));
    let metrics = SourceMetrics::default();
    let s = CachedCredentialSource::new(
        rx,
        Arc::new(providers),
        ttl,
        sa.map(str::to_owned),
        metrics.clone(),
    );
    (s, tx, metrics)
}

fn decrypts(m: &SourceMetrics, result: &'static str) -> u64 {
    m.kms_decrypts
        .get_or_create(&super::metrics::ResultLabel { result })
        .get()
}

#[tokio::test]
async fn decrypts_once_then_serves_from_cache() {
    let kms = LocalKms::generate().unwrap();
    let (s, _tx, m) = source(
        &kms,
        sealed_resource(&kms, "mail", "pw-one").await,
        Duration::from_secs(60),
        Some("app"),
    );
    let a = s.credential().await.unwrap();
    let b = s.credential().await.unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(a.auth.password().expect("password").expose(), "pw-one");
    assert_eq!(a.id(), "ns/mail");
    assert_eq!(decrypts(&m, "ok"), 1);
    assert_eq!(m.cache_hits.get(), 1);
}

#[tokio::test]
async fn plaintext_is_dropped_after_ttl_and_decrypted_again() {
    let kms = LocalKms::generate().unwrap();
    let (s, _tx, m) = source(
        &kms,
        sealed_resource(&kms, "mail", "pw").await,
        Duration::from_millis(50),
        None,
    );
    let first = s.credential().await.unwrap();
    let weak = Arc::downgrade(&first);
    drop(first);
    tokio::time::sleep(Duration::from_millis(80)).await;
    s.expire().await;
    assert!(
        weak.upgrade().is_none(),
        "cache let go of the plaintext after the TTL"
    );
    assert_eq!(m.cache_expiries.get(), 1);
    let again = s.credential().await.unwrap();
    assert_eq!(again.auth.password().expect("password").expose(), "pw");
    assert_eq!(decrypts(&m, "ok"), 2);
}

#[tokio::test]
async fn resealed_secret_is_picked_up_and_open_sessions_keep_theirs() {
    let kms = LocalKms::generate().unwrap();
    let (s, tx, m) = source(
        &kms,
        sealed_resource(&kms, "mail", "old-pw").await,
        Duration::from_secs(60),
        None,
    );
    let held = s.credential().await.unwrap();
    tx.send(Some(Arc::new(
        sealed_resource(&kms, "mail", "new-pw").await,
    )))
    .unwrap();
    let fresh = s.credential().await.unwrap();
    assert_eq!(fresh.auth.password().expect("password").expose(), "new-pw");
    assert_ne!(fresh.sealed_fingerprint, held.sealed_fingerprint);
    assert_eq!(
        held.auth.password().expect("password").expose(),
        "old-pw",
        "an open session finishes on its secret"
    );
    assert_eq!(decrypts(&m, "ok"), 2);
}

#[tokio::test]
async fn policy_edit_needs_no_decrypt_but_gives_a_new_credential() {
    let kms = LocalKms::generate().unwrap();
    let original = sealed_resource(&kms, "mail", "pw").await;
    let (s, tx, m) = source(&kms, original.clone(), Duration::from_secs(60), None);
    let a = s.credential().await.unwrap();
    let mut edited = original;
    edited.spec.policy.smtp.max_recipients = 3;
    tx.send(Some(Arc::new(edited))).unwrap();
    let b = s.credential().await.unwrap();
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(b.policy.smtp.max_recipients, 3);
    assert_eq!(b.auth.password().expect("password").expose(), "pw");
    assert_eq!(decrypts(&m, "ok"), 1);
}

#[tokio::test]
async fn ciphertext_moved_to_another_name_does_not_open() {
    let kms = LocalKms::generate().unwrap();
    let mut moved = sealed_resource(&kms, "mail", "pw").await;
    moved.metadata.name = Some("other".into());
    let (s, _tx, m) = source(&kms, moved, Duration::from_secs(60), None);
    let err = s.credential().await.unwrap_err();
    assert!(!err.to_string().contains("pw\""));
    assert_eq!(decrypts(&m, err.metric_label()), 1);
}

#[tokio::test]
async fn service_account_not_listed_is_refused() {
    let kms = LocalKms::generate().unwrap();
    let (s, _tx, _m) = source(
        &kms,
        sealed_resource(&kms, "mail", "pw").await,
        Duration::from_secs(60),
        Some("intruder"),
    );
    let err = s.credential().await.unwrap_err();
    assert!(err.to_string().contains("intruder"), "{err}");
}

#[tokio::test]
async fn deleted_resource_refuses() {
    let kms = LocalKms::generate().unwrap();
    let (s, tx, _m) = source(
        &kms,
        sealed_resource(&kms, "mail", "pw").await,
        Duration::from_secs(60),
        None,
    );
    assert!(s.loaded());
    let first = Arc::downgrade(&s.credential().await.unwrap());
    tx.send(None).unwrap();
    assert!(!s.loaded());
    let err = s.credential().await.unwrap_err();
    assert_eq!(err.metric_label(), "credential_deleted");
    assert!(err.to_string().contains("ns/mail was deleted"), "{err}");
    assert!(first.upgrade().is_none(), "the refused request dropped it");
    // The plaintext goes at the next expiry tick, not at the end of the TTL (60 s here).
    s.expire().await;
    assert!(first.upgrade().is_none(), "deleted credential still cached");
}

#[tokio::test]
async fn nothing_loaded_is_not_reported_as_deleted() {
    // A source whose feed never had a resource.
    let (_empty_tx, empty) = watch::channel(None);
    let fresh = CachedCredentialSource::new(
        empty,
        Arc::new(KmsProviders::default()),
        Duration::from_secs(60),
        None,
        SourceMetrics::default(),
    );
    let err = fresh.credential().await.unwrap_err();
    assert_eq!(err.metric_label(), "credential_not_loaded");
    assert!(fresh.outline().is_none());
}

#[tokio::test]
async fn outline_needs_no_decrypt() {
    let kms = LocalKms::generate().unwrap();
    let mut resource = sealed_resource(&kms, "mail", "pw").await;
    resource.spec.policy.smtp.max_message_bytes = 12345;
    let (s, _tx, m) = source(&kms, resource, Duration::from_secs(60), None);
    let outline = s.outline().unwrap();
    assert_eq!(outline.id, "ns/mail");
    assert_eq!(outline.policy.smtp.max_message_bytes, 12345);
    assert_eq!(decrypts(&m, "ok"), 0);
}

#[tokio::test]
async fn resealed_secret_drops_the_old_plaintext_without_a_request() {
    let kms = LocalKms::generate().unwrap();
    let (s, tx, _m) = source(
        &kms,
        sealed_resource(&kms, "mail", "old-pw").await,
        Duration::from_secs(60),
        None,
    );
    let old = Arc::downgrade(&s.credential().await.unwrap());
    tx.send(Some(Arc::new(
        sealed_resource(&kms, "mail", "new-pw").await,
    )))
    .unwrap();
    s.expire().await;
    assert!(
        old.upgrade().is_none(),
        "re-sealed: old plaintext still cached"
    );
}

/// The resource with its access list replaced.
fn with_access(resource: &MailCredential, service_accounts: &[&str]) -> Arc<MailCredential> {
    let mut edited = resource.clone();
    edited.spec.access.service_accounts = service_accounts.iter().map(|s| s.to_string()).collect();
    Arc::new(edited)
}

fn drops(m: &SourceMetrics, reason: super::DropReason) -> u64 {
    m.cache_drops
        .get_or_create(&super::metrics::DropLabel {
            reason: reason.label(),
        })
        .get()
}

#[tokio::test]
async fn removed_service_account_is_refused_at_once_and_the_plaintext_dropped() {
    let kms = LocalKms::generate().unwrap();
    let original = sealed_resource(&kms, "mail", "pw").await;
    let (s, tx, m) = source(
        &kms,
        original.clone(),
        Duration::from_secs(900),
        Some("app"),
    );
    let cached = Arc::downgrade(&s.credential().await.unwrap());
    assert!(cached.upgrade().is_some(), "the cache holds the credential");
    assert!(s.outline().is_some());

    tx.send(Some(with_access(&original, &["someone-else"])))
        .unwrap();
    let err = s.credential().await.unwrap_err();
    assert_eq!(err.metric_label(), "service_account_not_allowed");
    let text = err.to_string();
    assert!(
        text.contains("spec.access.serviceAccounts")
            && text.contains("app")
            && text.contains("ns/mail"),
        "{text}"
    );
    assert!(
        cached.upgrade().is_none(),
        "the cache still holds the plaintext of a credential the pod may no longer use"
    );
    assert_eq!(drops(&m, super::DropReason::AccessRevoked), 1);
    assert!(
        s.outline().is_none(),
        "outline of a credential we may not use"
    );

    // Listed again: decrypted afresh (the old plaintext is gone), not served from a cache.
    tx.send(Some(with_access(&original, &["someone-else", "app"])))
        .unwrap();
    assert_eq!(
        s.credential()
            .await
            .unwrap()
            .auth
            .password()
            .expect("password")
            .expose(),
        "pw"
    );
    assert_eq!(decrypts(&m, "ok"), 2);
}

#[tokio::test]
async fn removed_service_account_drops_the_plaintext_without_a_request() {
    let kms = LocalKms::generate().unwrap();
    let original = sealed_resource(&kms, "mail", "pw").await;
    let (s, tx, _m) = source(
        &kms,
        original.clone(),
        Duration::from_secs(900),
        Some("app"),
    );
    let s = Arc::new(s);
    let cached = Arc::downgrade(&s.credential().await.unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    // A tick far beyond the test: only the feed change can empty the cache.
    let watcher = tokio::spawn({
        let (s, shutdown) = (s.clone(), shutdown.clone());
        async move { s.expire_until(Duration::from_secs(3600), shutdown).await }
    });
    tx.send(Some(with_access(&original, &["someone-else"])))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while cached.upgrade().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the feed change dropped the plaintext");
    shutdown.cancel();
    watcher.await.unwrap();
}

#[tokio::test]
async fn access_edit_without_a_configured_service_account_is_no_revocation() {
    // Without a configured ServiceAccount (file mode, no MAILCRED_SERVICE_ACCOUNT) nothing is
    // refused on access; an access edit is then only a policy-like edit.
    let kms = LocalKms::generate().unwrap();
    let original = sealed_resource(&kms, "mail", "pw").await;
    let (s, tx, m) = source(&kms, original.clone(), Duration::from_secs(900), None);
    let a = s.credential().await.unwrap();
    tx.send(Some(with_access(&original, &["someone-else"])))
        .unwrap();
    let b = s.credential().await.unwrap();
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(decrypts(&m, "ok"), 1);
    assert_eq!(drops(&m, super::DropReason::AccessRevoked), 0);
}
