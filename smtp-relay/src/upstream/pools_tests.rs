use std::sync::Arc;
use std::time::Duration;

use mailcred_core::credential::UsableCredential;
use mailcred_core::testkit::TestCredential;

use super::{Limits, Pools};

const LONG: Duration = Duration::from_secs(600);

fn credential(name: &str) -> Arc<UsableCredential> {
    Arc::new(TestCredential::new("ns", name).usable("pw"))
}

fn pools(per_credential: usize, total_idle: usize, max_pools: usize) -> Pools<String, u32> {
    Pools::new(Limits {
        per_credential,
        total_idle,
        max_pools,
    })
}

#[test]
fn a_connection_goes_only_to_its_own_credential() {
    let mut p = pools(4, 16, 16);
    let (a, b) = (credential("a"), credential("b"));
    p.insert(&a, Arc::new("target-a".into()));
    p.insert(&b, Arc::new("target-b".into()));
    let (ta, _) = p.checkout(&a, LONG).unwrap();
    let (tb, _) = p.checkout(&b, LONG).unwrap();
    assert!(p.checkin("ns/a", &ta, 1).is_none());
    assert!(p.checkin("ns/b", &tb, 2).is_none());
    // A connection of A offered under B's name but A's target is refused.
    assert_eq!(p.checkin("ns/b", &ta, 3), Some(3));
    let (_, idle) = p.checkout(&b, LONG).unwrap();
    assert_eq!(idle.map(|i| i.conn), Some(2));
    let (_, idle) = p.checkout(&a, LONG).unwrap();
    assert_eq!(idle.map(|i| i.conn), Some(1));
    assert_eq!(p.idle_total(), 0);
}

#[test]
fn another_copy_of_the_credential_gets_no_pooled_connection() {
    let mut p = pools(4, 16, 16);
    let a = credential("a");
    p.insert(&a, Arc::new("t".into()));
    let (t, _) = p.checkout(&a, LONG).unwrap();
    assert!(p.checkin("ns/a", &t, 1).is_none());
    // Same id, another decrypted copy (re-seal, re-decrypt): no pool for it.
    let rotated = credential("a");
    assert!(p.checkout(&rotated, LONG).is_none());
    p.insert(&rotated, Arc::new("t2".into()));
    assert_eq!(p.idle_total(), 0, "the old copy's connections are closed");
    assert_eq!(
        p.checkin("ns/a", &t, 2),
        Some(2),
        "an old connection is not taken back"
    );
}

#[test]
fn idle_connections_are_bounded_over_all_credentials() {
    let mut p = pools(2, 3, 16);
    let creds: Vec<_> = (0..4).map(|i| credential(&format!("c{i}"))).collect();
    for (i, c) in creds.iter().enumerate() {
        p.insert(c, Arc::new(format!("t{i}")));
        let (t, _) = p.checkout(c, LONG).unwrap();
        assert!(p.checkin(&c.id(), &t, i as u32).is_none());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(p.idle_total(), 3);
    // The longest idle (c0's) was closed for c3's.
    let (_, idle) = p.checkout(&creds[0], LONG).unwrap();
    assert!(idle.is_none());
    let (_, idle) = p.checkout(&creds[3], LONG).unwrap();
    assert_eq!(idle.map(|i| i.conn), Some(3));
    // Per credential: at most 2.
    let (t1, _) = p.checkout(&creds[1], LONG).unwrap();
    assert!(p.checkin("ns/c1", &t1, 10).is_none());
    assert!(p.checkin("ns/c1", &t1, 11).is_none());
    assert_eq!(p.checkin("ns/c1", &t1, 12), Some(12));
}

#[test]
fn pools_are_bounded_and_dead_credentials_are_swept() {
    let mut p = pools(2, 100, 3);
    let keep: Vec<_> = (0..10).map(|i| credential(&format!("c{i}"))).collect();
    for (i, c) in keep.iter().enumerate() {
        p.insert(c, Arc::new(format!("t{i}")));
        let (t, _) = p.checkout(c, LONG).unwrap();
        assert!(p.checkin(&c.id(), &t, i as u32).is_none());
    }
    assert_eq!(p.pools(), 3);
    assert_eq!(p.idle_total(), 3);
    assert!(
        p.checkout(&keep[0], LONG).is_none(),
        "least recently used went"
    );
    assert!(p.checkout(&keep[9], LONG).is_some());
    drop(keep);
    assert_eq!(p.sweep(LONG), 3);
    assert_eq!((p.pools(), p.idle_total()), (0, 0));
}

#[test]
fn expired_idle_connections_are_not_handed_out() {
    let mut p = pools(2, 8, 8);
    let a = credential("a");
    p.insert(&a, Arc::new("t".into()));
    let (t, _) = p.checkout(&a, LONG).unwrap();
    assert!(p.checkin("ns/a", &t, 1).is_none());
    std::thread::sleep(Duration::from_millis(5));
    let (_, idle) = p.checkout(&a, Duration::from_millis(1)).unwrap();
    assert!(idle.is_none());
    assert_eq!(p.idle_total(), 0);
}
