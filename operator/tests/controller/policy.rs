//! The policy patterns and flags: every bad pattern named, seenOnly against readOnly.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn bad_policy_patterns() {
    let (status, events) = bad(|v| {
        v["spec"]["policy"]["smtp"]["allowedSenders"] = json!(["*"]);
        v["spec"]["policy"]["smtp"]["allowedRecipients"] = json!(["ops@example..com"]);
        v["spec"]["policy"]["imap"]["allowedMailboxes"] = json!(["INBOX", "%"]);
    })
    .await;
    let ready = condition(&status, "Ready");
    for expected in [
        "spec.policy.smtp.allowedSenders[0] \"*\": a lone `*` is not allowed for senders",
        "spec.policy.smtp.allowedRecipients[0] \"ops@example..com\": the domain \"example..com\" has an empty label",
        "spec.policy.imap.allowedMailboxes[1] \"%\": `%` is IMAP LIST syntax",
    ] {
        assert!(
            ready.message.contains(expected),
            "{:?} lacks {expected:?}",
            ready.message
        );
    }
    assert_not_ready(&status, &events, "InvalidPolicy", "allowedSenders[0]");
    // The secret itself is fine: Sealed stays True so the engineer looks at the policy.
    assert_eq!(condition(&status, "Sealed").status, "True");
}

#[tokio::test]
async fn seen_only_with_read_write_is_a_contradiction() {
    let (status, events) = bad(|v| {
        v["spec"]["policy"]["imap"]["readOnly"] = json!(false);
        v["spec"]["policy"]["imap"]["seenOnly"] = json!(true);
    })
    .await;
    assert_not_ready(
        &status,
        &events,
        "InvalidPolicy",
        "spec.policy.imap.seenOnly is true but readOnly is false",
    );
}

#[tokio::test]
async fn seen_only_with_read_only_is_valid() {
    let (status, _) = bad(|v| {
        v["spec"]["policy"]["imap"]["seenOnly"] = json!(true);
    })
    .await;
    let ready = condition(&status, "Ready");
    assert!(!ready.message.contains("seenOnly"), "{:?}", ready.message);
}
