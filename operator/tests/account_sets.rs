//! The controller's account-set duties against kube's mock API (tests/common): lifetime GC
//! (an expired MailCredential is announced and deleted, a live one requeued at its expiry
//! instant) and one shared Role + RoleBinding per (namespace, set).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Recorded, credential, credential_json, echo, fake_client, status_error};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::{reflector, watcher};
use mailcred_core::crd::{MailCredential, MailCredentialStatus};
use mailcred_operator::controller::{Context, reconcile};
use mailcred_operator::metrics::Metrics;
use serde_json::{Value, json};

const CREDENTIAL_URI: &str = "/apis/mailcred.io/v1alpha1/namespaces/mail/mailcredentials/smtp?";
const EVENTS_URI: &str = "/apis/events.k8s.io/v1/namespaces/mail/events?";
const SET_ROLE_URI: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/mail/roles/mailcred-set:crm?&force=true&fieldManager=mailcred-operator";
const SET_BINDING_URI: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/mail/rolebindings/mailcred-set:crm?&force=true&fieldManager=mailcred-operator";
const UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";

fn fixed_now() -> Time {
    Time("2026-11-23T06:00:00Z".parse().unwrap())
}

fn context(client: kube::Client, metrics: Metrics) -> Arc<Context> {
    Arc::new(
        Context::new(
            client,
            "mailcred-operator-0".into(),
            metrics,
            Duration::from_secs(600),
        )
        .with_clock(fixed_now),
    )
}

/// `echo`, and a DELETE answered with the object (what the API server returns while the
/// garbage collector finishes).
fn api(r: &Recorded) -> (u16, Value) {
    if r.method == "DELETE" {
        return (200, credential_json());
    }
    echo(r)
}

fn expiring(at: &str) -> MailCredential {
    credential(|v| v["spec"]["expiresAt"] = json!(at))
}

fn member(name: &str, uid: &str, sas: &[&str]) -> MailCredential {
    credential(|v| {
        v["metadata"]["name"] = json!(name);
        v["metadata"]["uid"] = json!(uid);
        v["metadata"]["labels"] = json!({"mailcred.io/account-set": "crm"});
        v["spec"]["access"]["serviceAccounts"] = json!(sas);
    })
}

#[tokio::test]
async fn an_expired_credential_is_announced_then_deleted_by_uid() {
    let (client, log) = fake_client(api);
    let metrics = Metrics::default();
    let ctx = context(client, metrics.clone());
    let result = reconcile(Arc::new(expiring("2026-11-23T05:59:59Z")), ctx).await;
    assert_eq!(result.unwrap(), Action::await_change());
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log.len(),
        2,
        "an Event, then the delete, nothing else: {log:#?}"
    );
    assert_eq!(
        (log[0].method.as_str(), log[0].uri.as_str()),
        ("POST", EVENTS_URI)
    );
    assert_eq!(log[0].body["type"], "Normal");
    assert_eq!(log[0].body["reason"], "Expired");
    assert_eq!(
        log[0].body["note"],
        "Expired: lifetime ended at 2026-11-23T05:59:59Z; deleted"
    );
    assert_eq!(log[1].method, "DELETE");
    assert_eq!(log[1].uri, CREDENTIAL_URI);
    assert_eq!(log[1].body["preconditions"]["uid"], UID);
    assert_eq!(log[1].body["propagationPolicy"], "Background");
    assert_eq!(metrics.expired_deleted.get(), 1);
}

#[tokio::test]
async fn the_end_instant_itself_is_expired() {
    let (client, log) = fake_client(api);
    let ctx = context(client, Metrics::default());
    let result = reconcile(Arc::new(expiring("2026-11-23T06:00:00Z")), ctx).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(log.lock().unwrap().iter().any(|r| r.method == "DELETE"));
}

#[tokio::test]
async fn a_live_lifetime_is_requeued_at_its_end_not_polled() {
    let (client, log) = fake_client(api);
    let ctx = context(client, Metrics::default());
    let result = reconcile(Arc::new(expiring("2026-11-23T06:00:30Z")), ctx).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(31)));
    assert!(!log.lock().unwrap().iter().any(|r| r.method == "DELETE"));

    // Further away than the resync: the resync comes first.
    let (client, _) = fake_client(api);
    let ctx = context(client, Metrics::default());
    let result = reconcile(Arc::new(expiring("2026-11-24T06:00:00Z")), ctx).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(600)));
}

#[tokio::test]
async fn already_gone_or_replaced_counts_as_done_but_is_not_counted() {
    for (code, reason) in [(404, "NotFound"), (409, "Conflict")] {
        let (client, _) = fake_client(move |r| {
            if r.method == "DELETE" {
                return (
                    code,
                    status_error(code, reason, "gone or uid precondition failed"),
                );
            }
            echo(r)
        });
        let metrics = Metrics::default();
        let ctx = context(client, metrics.clone());
        let result = reconcile(Arc::new(expiring("2026-11-23T05:00:00Z")), ctx).await;
        assert_eq!(result.unwrap(), Action::await_change(), "{code}");
        assert_eq!(metrics.expired_deleted.get(), 0, "{code}");
    }
}

#[tokio::test]
async fn a_failed_delete_fails_the_reconcile_so_it_is_retried() {
    let (client, _) = fake_client(|r| {
        if r.method == "DELETE" {
            return (500, status_error(500, "InternalError", "etcd down"));
        }
        echo(r)
    });
    let metrics = Metrics::default();
    let ctx = context(client, metrics.clone());
    let err = reconcile(Arc::new(expiring("2026-11-23T05:00:00Z")), ctx)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("deleting expired MailCredential mail/smtp"),
        "{err}"
    );
    assert_eq!(metrics.expired_deleted.get(), 0);
}

#[tokio::test]
async fn set_members_share_one_role_bound_to_the_union_of_their_service_accounts() {
    let (client, log) = fake_client(echo);
    let ctx = context(client, Metrics::default());
    let a = member("smtp", UID, &["crm-app"]);
    let b = member(
        "acct-2",
        "2b4e28ba-2fa1-11d2-883f-0016d3cca427",
        &["crm-worker", "crm-app"],
    );
    let other_set = credential(|v| {
        v["metadata"]["name"] = json!("other");
        v["metadata"]["labels"] = json!({"mailcred.io/account-set": "helpdesk"});
        v["spec"]["access"]["serviceAccounts"] = json!(["helpdesk"]);
    });
    let (store, mut writer) = reflector::store::<MailCredential>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for c in [&a, &b, &other_set] {
        writer.apply_watcher_event(&watcher::Event::InitApply(c.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    ctx.set_roles.attach(store);

    reconcile(Arc::new(a), ctx.clone()).await.unwrap();
    let first = log.lock().unwrap().clone();
    assert_eq!(first[0].method, "PATCH");
    assert_eq!(first[0].uri, SET_ROLE_URI);
    assert_eq!(
        first[0].body,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {
                "name": "mailcred-set:crm",
                "namespace": "mail",
                "labels": {"app.kubernetes.io/managed-by": "mailcred-operator", "mailcred.io/account-set": "crm"}
            },
            "rules": [{
                "apiGroups": ["mailcred.io"],
                "resources": ["mailcredentials"],
                "verbs": ["get", "list", "watch"]
            }]
        }),
        "no resourceNames (list/watch by label cannot be restricted) and no owner"
    );
    assert_eq!(first[1].uri, SET_BINDING_URI);
    assert_eq!(
        first[1].body["subjects"],
        json!([
            {"kind": "ServiceAccount", "name": "crm-app", "namespace": "mail"},
            {"kind": "ServiceAccount", "name": "crm-worker", "namespace": "mail"}
        ]),
        "the union of the set, not the other set's helpdesk"
    );
    let status: MailCredentialStatus =
        serde_json::from_value(first[2].body["status"].clone()).unwrap();
    let access = status
        .conditions
        .iter()
        .find(|c| c.type_ == "AccessConfigured")
        .unwrap();
    assert!(
        access.message.contains("mailcred-set:crm"),
        "{}",
        access.message
    );

    // The second member: same subjects, applied moments ago: no RBAC request at all.
    let before = log.lock().unwrap().len();
    reconcile(Arc::new(b), ctx.clone()).await.unwrap();
    let second: Vec<Recorded> = log.lock().unwrap()[before..].to_vec();
    assert!(
        !second
            .iter()
            .any(|r| r.uri.contains("rbac.authorization.k8s.io")),
        "{second:#?}"
    );
    assert!(
        !second
            .iter()
            .any(|r| r.uri.contains("/roles/mailcred-acct-2"))
    );

    // A member naming a new ServiceAccount changes the subjects: applied again.
    let before = log.lock().unwrap().len();
    let c = member(
        "acct-3",
        "3b4e28ba-2fa1-11d2-883f-0016d3cca427",
        &["crm-audit"],
    );
    reconcile(Arc::new(c), ctx).await.unwrap();
    let third: Vec<Recorded> = log.lock().unwrap()[before..].to_vec();
    assert_eq!(third[1].uri, SET_BINDING_URI);
    let names: Vec<&str> = third[1].body["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["crm-app", "crm-audit", "crm-worker"]);
}

#[tokio::test]
async fn a_label_that_is_no_valid_set_name_keeps_the_credentials_own_role() {
    let (client, log) = fake_client(echo);
    let ctx = context(client, Metrics::default());
    let c = credential(|v| v["metadata"]["labels"] = json!({"mailcred.io/account-set": "CRM"}));
    reconcile(Arc::new(c), ctx).await.unwrap();
    let log = log.lock().unwrap().clone();
    assert!(
        log[0].uri.contains("/roles/mailcred-smtp?"),
        "{}",
        log[0].uri
    );
    assert_eq!(log[0].body["rules"][0]["resourceNames"], json!(["smtp"]));
}
