//! Leader election against a small stateful fake of the Lease API (on kube's mock service):
//! the controller runs only while the Lease is ours, and the Lease is released at shutdown.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Recorded, fake_client, status_error};
use mailcred_operator::leader::{LeaseSettings, run_while_leader};
use mailcred_operator::metrics::Metrics;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

type LeaseState = Arc<Mutex<Option<Value>>>;

const LEASE_URI: &str =
    "/apis/coordination.k8s.io/v1/namespaces/mailcred-system/leases/mailcred-operator";

/// RFC 7386 merge: enough to stand in for the strategic-merge and apply patches on a Lease.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn lease_server(
    initial: Option<Value>,
) -> (
    impl Fn(&Recorded) -> (u16, Value) + Send + 'static,
    LeaseState,
) {
    let state = Arc::new(Mutex::new(initial));
    let shared = state.clone();
    let respond = move |r: &Recorded| {
        let mut lease = shared.lock().unwrap();
        match r.method.as_str() {
            "GET" if r.uri.starts_with(LEASE_URI) => match lease.as_ref() {
                Some(l) => (200, l.clone()),
                None => (
                    404,
                    status_error(
                        404,
                        "NotFound",
                        "leases.coordination.k8s.io \"mailcred-operator\" not found",
                    ),
                ),
            },
            "POST" => {
                let mut created = r.body.clone();
                created["metadata"]["namespace"] = json!("mailcred-system");
                created["metadata"]["resourceVersion"] = json!("1");
                *lease = Some(created.clone());
                (201, created)
            }
            "PATCH" if r.uri.starts_with(LEASE_URI) => {
                let current = lease.get_or_insert_with(|| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "mailcred-operator", "namespace": "mailcred-system"}}));
                merge(current, &r.body);
                (200, current.clone())
            }
            _ => panic!("unexpected {} {}", r.method, r.uri),
        }
    };
    (respond, state)
}

fn settings(identity: &str) -> LeaseSettings {
    LeaseSettings {
        namespace: "mailcred-system".into(),
        name: "mailcred-operator".into(),
        identity: identity.into(),
        duration: Duration::from_secs(15),
    }
}

fn holder(state: &LeaseState) -> Value {
    state
        .lock()
        .unwrap()
        .as_ref()
        .map(|l| l["spec"]["holderIdentity"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn runs_the_controller_while_leader_and_releases_at_shutdown() {
    let (respond, state) = lease_server(None);
    let (client, _log) = fake_client(respond);
    let metrics = Metrics::default();
    let shutdown = CancellationToken::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    let stopped_tx = Arc::new(Mutex::new(Some(stopped_tx)));

    let task = tokio::spawn(run_while_leader(
        client,
        settings("replica-a"),
        metrics.clone(),
        shutdown.clone(),
        move |term| {
            let started = started_tx.lock().unwrap().take();
            let stopped = stopped_tx.lock().unwrap().take();
            async move {
                if let Some(tx) = started {
                    let _ = tx.send(());
                }
                term.cancelled().await;
                if let Some(tx) = stopped {
                    let _ = tx.send(());
                }
            }
        },
    ));

    tokio::time::timeout(Duration::from_secs(30), started_rx)
        .await
        .expect("became leader")
        .unwrap();
    assert_eq!(holder(&state), "replica-a");
    assert_eq!(metrics.leader.get(), 1);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), stopped_rx)
        .await
        .expect("controller told to stop")
        .unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(holder(&state), Value::Null, "released for a fast successor");
    assert_eq!(metrics.leader.get(), 0);
}

#[tokio::test]
async fn does_not_run_while_another_replica_holds_the_lease() {
    let now = k8s_openapi::jiff::Timestamp::now();
    let held = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "mailcred-operator", "namespace": "mailcred-system", "resourceVersion": "7"},
        "spec": {"holderIdentity": "replica-b", "leaseDurationSeconds": 3600,
                 "acquireTime": now.to_string(), "renewTime": now.to_string()}
    });
    let (respond, state) = lease_server(Some(held));
    let (client, log) = fake_client(respond);
    let metrics = Metrics::default();
    let shutdown = CancellationToken::new();
    let ran = Arc::new(Mutex::new(false));
    let ran_in = ran.clone();
    let task = tokio::spawn(run_while_leader(
        client,
        settings("replica-a"),
        metrics.clone(),
        shutdown.clone(),
        move |_term| {
            *ran_in.lock().unwrap() = true;
            async {}
        },
    ));
    // Wait until the manager has looked at the Lease, then stop.
    for _ in 0..300 {
        if !log.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !log.lock().unwrap().is_empty(),
        "the lease manager read the Lease"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert!(
        !*ran.lock().unwrap(),
        "a follower never runs the controller"
    );
    assert_eq!(
        holder(&state),
        "replica-b",
        "another replica's Lease is left alone"
    );
    assert_eq!(metrics.leader.get(), 0);
}
