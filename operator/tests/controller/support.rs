//! What the controller tests share: the URIs the reconciler calls, a context with a fixed clock,
//! one reconcile against the recording fake, and readers for the status and Events it wrote.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, Recorded, credential, echo, fake_client};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use mailcred_core::crd::{MailCredential, MailCredentialStatus};
use mailcred_operator::controller::{Context, reconcile};
use mailcred_operator::metrics::Metrics;
use serde_json::{Value, json};

pub const APPLY_QUERY: &str = "?&force=true&fieldManager=mailcred-operator";
pub const ROLE_URI: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/mail/roles/mailcred-smtp";
pub const BINDING_URI: &str =
    "/apis/rbac.authorization.k8s.io/v1/namespaces/mail/rolebindings/mailcred-smtp";
pub const STATUS_URI: &str =
    "/apis/mailcred.io/v1alpha1/namespaces/mail/mailcredentials/smtp/status";
pub const EVENTS_URI: &str = "/apis/events.k8s.io/v1/namespaces/mail/events?";

pub fn fixed_now() -> Time {
    Time("2026-11-23T06:00:00Z".parse().unwrap())
}

pub fn context(client: kube::Client) -> Arc<Context> {
    Arc::new(
        Context::new(
            client,
            "mailcred-operator-0".into(),
            Metrics::default(),
            Duration::from_secs(600),
        )
        .with_clock(fixed_now),
    )
}

pub fn owner() -> Value {
    json!([{
        "apiVersion": "mailcred.io/v1alpha1",
        "kind": "MailCredential",
        "name": "smtp",
        "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "controller": true
    }])
}

pub fn requests(log: &common::Log) -> Vec<Recorded> {
    log.lock().unwrap().clone()
}

pub fn status_of(r: &Recorded) -> MailCredentialStatus {
    assert_eq!(r.method, "PATCH");
    assert_eq!(r.uri, format!("{STATUS_URI}{APPLY_QUERY}"));
    assert_eq!(r.body["apiVersion"], "mailcred.io/v1alpha1");
    assert_eq!(r.body["kind"], "MailCredential");
    serde_json::from_value(r.body["status"].clone()).expect("status body")
}

pub fn condition<'a>(
    s: &'a MailCredentialStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {s:?}"))
}

/// Events posted, as (type, reason, note).
pub fn events(log: &[Recorded]) -> Vec<(String, String, String)> {
    log.iter()
        .filter(|r| r.uri == EVENTS_URI)
        .map(|r| {
            assert_eq!(r.method, "POST");
            assert_eq!(r.body["regarding"]["name"], "smtp");
            assert_eq!(r.body["regarding"]["kind"], "MailCredential");
            assert_eq!(r.body["reportingController"], "mailcred-operator");
            (
                r.body["type"].as_str().unwrap().to_string(),
                r.body["reason"].as_str().unwrap().to_string(),
                r.body["note"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub async fn run(obj: MailCredential) -> (Result<Action, mailcred_operator::Error>, Vec<Recorded>) {
    let (client, log) = fake_client(echo);
    let ctx = context(client);
    let result = reconcile(Arc::new(obj), ctx).await;
    (result, requests(&log))
}

/// Runs a bad credential; returns its status and the Events.
pub async fn bad(
    edit: impl FnOnce(&mut Value),
) -> (MailCredentialStatus, Vec<(String, String, String)>) {
    let (result, log) = run(credential(edit)).await;
    assert!(
        result.is_ok(),
        "invalid input is a status, not a reconcile error"
    );
    let status = status_of(
        log.iter()
            .find(|r| r.uri.starts_with(STATUS_URI))
            .expect("status patch"),
    );
    (status, events(&log))
}

pub fn assert_not_ready(
    status: &MailCredentialStatus,
    events: &[(String, String, String)],
    reason: &str,
    message: &str,
) {
    let ready = condition(status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason),
        "{ready:?}"
    );
    assert!(
        ready.message.contains(message),
        "Ready message {:?} lacks {message:?}",
        ready.message
    );
    assert!(
        events
            .iter()
            .any(|(t, r, n)| t == "Warning" && r == reason && n.contains(message)),
        "no Warning Event {reason} with {message:?}: {events:?}"
    );
}
