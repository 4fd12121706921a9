//! The plaintext cache's bounds: count (LRU), TTL, lifetime timer, one Decrypt per account.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailcred_core::accounts::AccountDirectory;
use tokio_util::sync::CancellationToken;

use super::tests::{at, fixture};

#[tokio::test]
async fn the_least_recently_used_plaintext_is_evicted_and_zeroized() {
    let f = fixture(2, Duration::from_secs(60), Duration::ZERO);
    let mut all = Vec::new();
    for name in ["a", "b", "c"] {
        all.push(f.account(name, &format!("pw-{name}")).await);
    }
    f.set.replace_all(all);
    let a = Arc::downgrade(&f.set.credential("a").await.unwrap());
    let b = Arc::downgrade(&f.set.credential("b").await.unwrap());
    // a used again: b is now the least recently used.
    f.set.credential("a").await.unwrap();
    let c = Arc::downgrade(&f.set.credential("c").await.unwrap());
    assert!(
        b.upgrade().is_none(),
        "b evicted (and zeroized with its last Arc)"
    );
    assert!(a.upgrade().is_some() && c.upgrade().is_some());
    assert_eq!(f.set.cached_plaintexts(), 2);
    assert_eq!(f.metrics.cached_plaintexts.get(), 2);
    assert_eq!(f.drops("evicted"), 1);
    assert_eq!(f.kms.calls(), 3);
    // b again: one more decrypt, and a (now the oldest) makes room.
    assert_eq!(f.password("b").await.unwrap(), "pw-b");
    assert_eq!(f.kms.calls(), 4);
    assert!(a.upgrade().is_none());
    assert_eq!(f.password("c").await.unwrap(), "pw-c");
    assert_eq!(f.kms.calls(), 4, "c was still cached");
}

/// 200 concurrent first uses over 20 accounts: one Decrypt per account, and the 20 run in
/// parallel (each KMS call takes 100 ms; serial would take 2 s).
#[tokio::test]
async fn concurrent_first_uses_make_one_decrypt_per_account_in_parallel() {
    let f = fixture(1000, Duration::from_secs(60), Duration::from_millis(100));
    let mut all = Vec::new();
    for i in 0..20 {
        all.push(f.account(&format!("acct-{i}"), &format!("pw-{i}")).await);
    }
    f.set.replace_all(all);
    let started = Instant::now();
    let requests = (0..200).map(|i| {
        let set = f.set.clone();
        async move {
            let name = format!("acct-{}", i % 20);
            let c = set.credential(&name).await.unwrap();
            (i % 20, c.auth.password().unwrap().expose().to_owned())
        }
    });
    let results = futures::future::join_all(requests).await;
    let elapsed = started.elapsed();
    for (i, password) in results {
        assert_eq!(password, format!("pw-{i}"));
    }
    assert_eq!(f.kms.calls(), 20);
    assert_eq!(f.decrypts_ok(), 20);
    assert_eq!(f.metrics.source.cache_hits.get(), 180);
    assert!(
        elapsed < Duration::from_millis(1000),
        "accounts decrypted one after another: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_plaintext_lives_at_most_the_ttl() {
    let f = fixture(10, Duration::from_millis(150), Duration::ZERO);
    f.set.replace_all(vec![f.account("a", "pw").await]);
    let weak = Arc::downgrade(&f.set.credential("a").await.unwrap());
    assert_eq!(
        f.set.expire().map(|d| d > Instant::now()),
        Some(true),
        "the timer knows the TTL end"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(weak.upgrade().is_some(), "no request and no tick yet");
    assert_eq!(f.set.expire(), None, "nothing cached any more");
    assert!(weak.upgrade().is_none());
    assert_eq!(f.drops("ttl"), 1);
    assert_eq!(f.password("a").await.unwrap(), "pw");
    assert_eq!(f.kms.calls(), 2);
}

/// The timer wakes at the lifetime's end (not at the 5 s backstop) and drops the plaintext;
/// the account is refused from that instant on.
#[tokio::test]
async fn the_timer_drops_a_plaintext_when_its_lifetime_ends() {
    let f = fixture(10, Duration::from_secs(3600), Duration::ZERO);
    let mut session = f.account("webmail-1", "pw").await;
    session.spec.expires_at = Some(at(400));
    f.set.replace_all(vec![session]);
    let shutdown = CancellationToken::new();
    let timer = {
        let (set, shutdown) = (f.set.clone(), shutdown.clone());
        tokio::spawn(async move { set.expire_until(Duration::from_secs(5), shutdown).await })
    };
    let weak = Arc::downgrade(&f.set.credential("webmail-1").await.unwrap());
    assert!(f.set.account("webmail-1").is_some());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(weak.upgrade().is_none(), "dropped at the lifetime's end");
    assert_eq!(f.drops("expired"), 1);
    assert!(f.set.account("webmail-1").is_none());
    assert!(f.set.credential("webmail-1").await.is_err());
    shutdown.cancel();
    timer.await.unwrap();
}
