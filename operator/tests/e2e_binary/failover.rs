//! Two replicas against one fake cluster: one reconciles, both serve, the follower takes over
//! when the leader gets SIGTERM.

use crate::fake_api::*;
use crate::operator_process::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_controller_and_failover_on_sigterm() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let state = fake_cluster();
    let (port_a, port_b) = (serve_api(&state, 1).await, serve_api(&state, 2).await);
    let dir = tempfile::tempdir().unwrap();
    let lease = ["--leader-elect", "true", "--lease-duration-seconds", "6"];
    let mut a = start_operator(dir.path(), port_a, "replica-a", &lease);
    let lease_held = || {
        state
            .lock()
            .unwrap()
            .lease
            .as_ref()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
    };
    let first = wait_for("replica-a to take the Lease", lease_held).await;
    assert_eq!(first, "replica-a");
    let mut b = start_operator(dir.path(), port_b, "replica-b", &lease);
    wait_ready(&a).await;
    wait_ready(&b).await; // both serve the webhook

    wait_for("replica-a to reconcile", || {
        (status_patches_by(&state, 1) > 0).then_some(())
    })
    .await;
    assert_eq!(
        metric(&a, "mailcred_operator_leader").await.as_deref(),
        Some("mailcred_operator_leader 1")
    );
    assert_eq!(
        metric(&b, "mailcred_operator_leader").await.as_deref(),
        Some("mailcred_operator_leader 0")
    );
    assert_eq!(
        status_patches_by(&state, 2),
        0,
        "the follower does not reconcile"
    );

    // The leader goes: it releases the Lease and the follower takes over.
    assert!(terminate(&mut a).await.success());
    let next = wait_for("replica-b to take the Lease", || {
        lease_held().filter(|h| h == "replica-b")
    })
    .await;
    assert_eq!(next, "replica-b");
    wait_for("replica-b to reconcile", || {
        (status_patches_by(&state, 2) > 0).then_some(())
    })
    .await;
    assert_eq!(
        metric(&b, "mailcred_operator_leader").await.as_deref(),
        Some("mailcred_operator_leader 1")
    );
    assert!(terminate(&mut b).await.success());
}
