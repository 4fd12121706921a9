//! When the status is patched and Events are posted again: only on a change.

use crate::common::credential;
use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn unchanged_status_is_not_patched_and_no_events_repeat() {
    let (_, first) = run(credential(|_| {})).await;
    let status = status_of(&first[2]);
    // The object as the API server now has it: the status we wrote, read back.
    let mut again = credential(|_| {});
    again.status = Some(status);
    let (result, log) = run(again).await;
    assert!(result.is_ok());
    let calls: Vec<_> = log
        .iter()
        .map(|r| (r.method.as_str(), r.uri.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("PATCH", format!("{ROLE_URI}{APPLY_QUERY}").as_str()),
            ("PATCH", format!("{BINDING_URI}{APPLY_QUERY}").as_str()),
        ],
        "only the two idempotent applies; no status patch, no Event"
    );
}

#[tokio::test]
async fn new_generation_patches_status_without_events() {
    let (_, first) = run(credential(|_| {})).await;
    let mut again = credential(|v| v["metadata"]["generation"] = json!(2));
    again.status = Some(status_of(&first[2]));
    let (_, log) = run(again).await;
    assert_eq!(log.len(), 3, "{log:#?}");
    let status = status_of(&log[2]);
    assert_eq!(status.observed_generation, Some(2));
    assert!(events(&log).is_empty(), "no condition changed, so no Event");
}

#[tokio::test]
async fn fixing_a_credential_turns_warnings_into_normal_events() {
    let (_, first) = run(credential(|v| {
        v["spec"]["sealedSecret"]["version"] = json!(2)
    }))
    .await;
    let mut fixed = credential(|v| v["metadata"]["generation"] = json!(2));
    fixed.status = Some(status_of(&first[2]));
    let (_, log) = run(fixed).await;
    let status = status_of(&log[2]);
    assert_eq!(condition(&status, "Ready").status, "True");
    assert_eq!(
        condition(&status, "Ready").last_transition_time,
        fixed_now()
    );
    let ev = events(&log);
    assert_eq!(
        ev.iter()
            .map(|(t, r, _)| (t.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        [("Normal", "Ready"), ("Normal", "SealedSecretValid")],
        "only the conditions that changed"
    );
}
