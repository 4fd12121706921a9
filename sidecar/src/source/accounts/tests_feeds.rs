//! The feeds: one list+watch by label selector against a mock API server, and the directory.

use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use mailcred_core::accounts::AccountDirectory;
use mailcred_core::crd::MailCredential;
use tokio_util::sync::CancellationToken;

use super::tests::fixture;
use super::{dir, watch};

fn json(value: serde_json::Value) -> Response<Body> {
    Response::new(Body::from(serde_json::to_vec(&value).unwrap()))
}

fn versioned(mut r: MailCredential, version: u32) -> MailCredential {
    r.metadata.resource_version = Some(version.to_string());
    r
}

async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// One list with the set's label selector (never a request per name), then watch events:
/// an added account, an access edit that revokes one (its plaintext dropped at once), and a
/// deletion, each reaching the directory.
#[tokio::test]
async fn one_list_and_watch_by_label_selector_feeds_the_directory() {
    let f = fixture(10, Duration::from_secs(60), Duration::ZERO);
    let alice = versioned(f.account("alice", "pw-a").await, 1);
    let bob = versioned(f.account("bob", "pw-b").await, 2);
    let carol = versioned(f.account("carol", "pw-c").await, 3);
    let mut revoked = alice.clone();
    revoked.spec.access.service_accounts = vec!["other".into()];
    let revoked = versioned(revoked, 4);
    let deleted = versioned(bob.clone(), 5);

    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (step_tx, mut step_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("list");
        let uri = req.uri().to_string();
        assert_eq!(req.method(), http::Method::GET);
        assert!(
            uri.starts_with("/apis/mailcred.io/v1alpha1/namespaces/ns/mailcredentials?"),
            "{uri}"
        );
        assert!(
            uri.contains("labelSelector=mailcred.io%2Faccount-set%3Dcrm"),
            "{uri}"
        );
        assert!(
            !uri.contains("watch=true") && !uri.contains("fieldSelector"),
            "{uri}"
        );
        send.send_response(json(serde_json::json!({
            "apiVersion": "mailcred.io/v1alpha1", "kind": "MailCredentialList",
            "metadata": {"resourceVersion": "2"}, "items": [alice, bob],
        })));
        for (kind, obj) in [
            ("ADDED", carol),
            ("MODIFIED", revoked),
            ("DELETED", deleted),
        ] {
            // One event per watch response, sent once the test saw the previous one.
            step_rx.recv().await.expect("next step");
            let (req, send) = handle.next_request().await.expect("watch");
            let uri = req.uri().to_string();
            assert!(uri.contains("watch=true"), "{uri}");
            assert!(
                uri.contains("labelSelector=mailcred.io%2Faccount-set%3Dcrm"),
                "{uri}"
            );
            let mut event =
                serde_json::to_vec(&serde_json::json!({"type": kind, "object": obj})).unwrap();
            event.push(b'\n');
            send.send_response(Response::new(Body::from(event)));
        }
        let _pending = handle.next_request().await;
        std::future::pending::<()>().await;
    });
    let client = kube::Client::new(service, "ns");
    let shutdown = CancellationToken::new();
    watch::watch_set_with_client(client, f.set.clone(), shutdown.clone())
        .await
        .expect("first list");
    assert!(f.set.loaded(), "ready once the first list is applied");
    assert_eq!(f.set.len(), 2);
    let alice_weak = std::sync::Arc::downgrade(&f.set.credential("alice").await.unwrap());

    step_tx.send(()).unwrap();
    until("carol added", || f.set.account("carol").is_some()).await;
    assert_eq!(f.password("carol").await.unwrap(), "pw-c");

    step_tx.send(()).unwrap();
    until("alice revoked", || f.set.account("alice").is_none()).await;
    assert!(
        alice_weak.upgrade().is_none(),
        "alice's plaintext dropped at once"
    );
    assert_eq!(f.drops("access_revoked"), 1);

    step_tx.send(()).unwrap();
    until("bob deleted", || {
        f.set.len() == 2 && f.set.account("bob").is_none()
    })
    .await;
    assert!(f.set.account("carol").is_some());
    shutdown.cancel();
    server.abort();
}

/// No RBAC: the first list's error stops the start-up, naming the selector and the fix.
#[tokio::test]
async fn a_refused_first_list_fails_the_start() {
    let f = fixture(10, Duration::from_secs(60), Duration::ZERO);
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let (_req, send) = handle.next_request().await.expect("list");
        let mut forbidden = json(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
            "message": "mailcredentials is forbidden", "code": 403,
        }));
        *forbidden.status_mut() = http::StatusCode::FORBIDDEN;
        send.send_response(forbidden);
        std::future::pending::<()>().await;
    });
    let client = kube::Client::new(service, "ns");
    let e = watch::watch_set_with_client(client, f.set.clone(), CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mailcred.io/account-set=crm") && e.contains("list and watch"),
        "{e}"
    );
    assert!(!f.set.loaded());
    server.abort();
}

fn write(path: &std::path::Path, resource: &MailCredential) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(resource).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `--credential-dir`: the labelled manifests are the accounts; an edit, a new file and a
/// removed file reach the directory on the next scan; other files are ignored.
#[tokio::test]
async fn the_credential_directory_feeds_the_directory_and_follows_changes() {
    let f = fixture(10, Duration::from_secs(60), Duration::ZERO);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let alice = f.account("alice", "pw-a").await;
    write(&d.join("alice.yaml"), &alice);
    let unlabelled = mailcred_core::testkit::TestCredential::new("ns", "plain")
        .sealed(&f.kms.inner, "pw")
        .await;
    write(&d.join("plain.yaml"), &unlabelled);
    write(&d.join("bob.json"), &f.account("bob", "pw-b").await);
    std::fs::write(d.join("broken.yaml"), "not: [a credential").unwrap();
    let shutdown = CancellationToken::new();
    dir::watch_dir(
        d.to_owned(),
        f.set.clone(),
        Duration::from_millis(100),
        shutdown.clone(),
    )
    .await
    .expect("first scan");
    assert!(f.set.loaded());
    assert_eq!(f.set.len(), 1, "only alice.yaml is a labelled manifest");
    assert_eq!(f.password("alice").await.unwrap(), "pw-a");

    write(&d.join("carol.yaml"), &f.account("carol", "pw-c").await);
    write(&d.join("alice.yaml"), &f.account("alice", "pw-a2").await);
    until("carol read", || f.set.account("carol").is_some()).await;
    until("alice re-sealed", || {
        f.set
            .resource("alice")
            .is_some_and(|r| r.spec.sealed_secret != alice.spec.sealed_secret)
    })
    .await;
    assert_eq!(f.password("alice").await.unwrap(), "pw-a2");
    std::fs::remove_file(d.join("alice.yaml")).unwrap();
    until("alice removed", || f.set.account("alice").is_none()).await;
    assert_eq!(f.set.len(), 1);
    shutdown.cancel();
}
