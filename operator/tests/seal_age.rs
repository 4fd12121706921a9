//! Seal age and retired keys through the reconciler, against kube's mock API service:
//! `status.sealedAt`/`kmsKeyId`, kept across reconciles and reset on a re-seal; the KeyRetired
//! condition and its Warning Event, once per transition.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Recorded, b64, credential, echo, fake_client};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mailcred_core::crd::{MailCredential, MailCredentialStatus};
use mailcred_operator::controller::{Context, reconcile};
use mailcred_operator::metrics::Metrics;
use mailcred_operator::seal_age::RetiredKeys;
use serde_json::json;

const STATUS_URI: &str = "/apis/mailcred.io/v1alpha1/namespaces/mail/mailcredentials/smtp/status";
const EVENTS_URI: &str = "/apis/events.k8s.io/v1/namespaces/mail/events?";
/// The fixture's key (common::credential_json).
const FIXTURE_KEY: &str = "sha256:00112233445566778899aabbccddeeff";

fn day_one() -> Time {
    Time("2026-11-23T06:00:00Z".parse().unwrap())
}

fn day_two() -> Time {
    Time("2026-11-24T06:00:00Z".parse().unwrap())
}

async fn run(
    obj: MailCredential,
    now: fn() -> Time,
    retired: &[&str],
) -> (Option<MailCredentialStatus>, Vec<(String, String, String)>) {
    let (client, log) = fake_client(echo);
    let ctx = Context::new(
        client,
        "mailcred-operator-0".into(),
        Metrics::default(),
        Duration::from_secs(600),
    )
    .with_clock(now)
    .with_retired_keys(RetiredKeys::new(
        retired.iter().map(|k| k.to_string()).collect(),
    ));
    reconcile(Arc::new(obj), Arc::new(ctx)).await.unwrap();
    let log: Vec<Recorded> = log.lock().unwrap().clone();
    let status = log
        .iter()
        .find(|r| r.uri.starts_with(STATUS_URI))
        .map(|r| serde_json::from_value(r.body["status"].clone()).unwrap());
    let events = log
        .iter()
        .filter(|r| r.uri == EVENTS_URI)
        .map(|r| {
            (
                r.body["type"].as_str().unwrap().to_string(),
                r.body["reason"].as_str().unwrap().to_string(),
                r.body["note"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (status, events)
}

fn resealed(v: &mut serde_json::Value) {
    v["spec"]["sealedSecret"]["ciphertext"] = json!(b64(&[3u8; 80]));
}

#[tokio::test]
async fn sealed_at_and_key_are_reported_kept_and_reset_on_reseal() {
    let (first, _) = run(credential(|_| {}), day_one, &[]).await;
    let first = first.expect("a new credential gets a status");
    assert_eq!(first.sealed_at, Some(day_one()));
    assert_eq!(first.kms_key_id.as_deref(), Some(FIXTURE_KEY));
    assert!(
        first.conditions.iter().all(|c| c.type_ != "KeyRetired"),
        "no retired keys configured: no extra condition"
    );

    // A day later, same ciphertext, status read back: nothing to patch, sealedAt stays.
    let mut same = credential(|_| {});
    same.status = Some(first.clone());
    let (patched, events) = run(same, day_two, &[]).await;
    assert_eq!(patched, None, "an unchanged seal patches nothing");
    assert!(events.is_empty());

    // A new generation still keeps the seal time (only the fingerprint resets it).
    let mut edited = credential(|v| v["metadata"]["generation"] = json!(2));
    edited.status = Some(first.clone());
    let (patched, _) = run(edited, day_two, &[]).await;
    assert_eq!(patched.unwrap().sealed_at, Some(day_one()));

    // Re-sealed: a new fingerprint, so the seal's age starts again.
    let mut again = credential(resealed);
    again.status = Some(first.clone());
    let (patched, _) = run(again, day_two, &[]).await;
    let patched = patched.unwrap();
    assert_eq!(patched.sealed_at, Some(day_two()));
    assert_ne!(
        patched.sealed_secret_fingerprint,
        first.sealed_secret_fingerprint
    );

    // Unsealed (a pending request): neither field.
    let (pending, _) = run(
        credential(|v| {
            v["spec"].as_object_mut().unwrap().remove("sealedSecret");
        }),
        day_one,
        &[],
    )
    .await;
    let pending = pending.unwrap();
    assert_eq!((pending.sealed_at, pending.kms_key_id), (None, None));
}

#[tokio::test]
async fn a_retired_key_sets_key_retired_with_one_warning_event_per_transition() {
    let (status, events) = run(credential(|_| {}), day_one, &[FIXTURE_KEY]).await;
    let status = status.unwrap();
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "KeyRetired")
        .expect("KeyRetired condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "SealedWithRetiredKey")
    );
    assert!(c.message.contains(FIXTURE_KEY), "{}", c.message);
    assert!(
        c.message
            .contains("kubectl mailcred reencrypt smtp --to-kms-key"),
        "{}",
        c.message
    );
    let warnings: Vec<_> = events
        .iter()
        .filter(|(_, reason, _)| reason == "SealedWithRetiredKey")
        .collect();
    assert_eq!(warnings.len(), 1, "{events:#?}");
    assert_eq!(warnings[0].0, "Warning");
    assert!(
        warnings[0].2.starts_with("KeyRetired is True: "),
        "{}",
        warnings[0].2
    );
    // Ready stays True: a retired key still works, it only has to be moved.
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    // Next reconcile with the status read back: no new Event.
    let mut same = credential(|_| {});
    same.status = Some(status.clone());
    let (patched, events) = run(same, day_two, &[FIXTURE_KEY]).await;
    assert_eq!(patched, None);
    assert!(events.is_empty(), "{events:#?}");

    // Re-encrypted to another key: KeyRetired turns False with a Normal Event.
    let mut moved = credential(|v| {
        resealed(v);
        v["spec"]["sealedSecret"]["kms"]["keyId"] =
            json!("sha256:ffeeddccbbaa99887766554433221100");
    });
    moved.status = Some(status);
    let (patched, events) = run(moved, day_two, &[FIXTURE_KEY]).await;
    let patched = patched.unwrap();
    let c = patched
        .conditions
        .iter()
        .find(|c| c.type_ == "KeyRetired")
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "SealedWithCurrentKey")
    );
    assert_eq!(
        patched.kms_key_id.as_deref(),
        Some("sha256:ffeeddccbbaa99887766554433221100")
    );
    assert_eq!(
        events
            .iter()
            .map(|(t, r, _)| (t.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        [("Normal", "SealedWithCurrentKey")]
    );
}
