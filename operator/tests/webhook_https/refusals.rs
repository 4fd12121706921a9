//! Refusals: every message says which credential or field and why; the Admit policy admits
//! the pod uninjected with the message as a warning.

use crate::support::*;
use mailcred_operator::config::{InvalidPodPolicy, SidecarMode};
use serde_json::json;

#[tokio::test]
async fn refusals_say_which_and_why() {
    let hook = start(
        InvalidPodPolicy::Deny,
        SidecarMode::Native,
        vec![ready_credential("smtp", &["mailer"])],
    )
    .await;

    let msg = denied(&hook, annotate("smtp,missing")).await;
    assert_eq!(
        msg,
        "mailcred: MailCredential mail/missing does not exist; create it (kubectl mailcred seal) or fix the mailcred.io/inject annotation"
    );

    let msg = denied(&hook, |r| {
        r["request"]["object"]["spec"]["serviceAccountName"] = json!("intruder")
    })
    .await;
    assert_eq!(
        msg,
        "mailcred: ServiceAccount intruder may not use MailCredential mail/smtp (spec.access.serviceAccounts: [mailer]); run the pod as one of those or add intruder to the list"
    );

    let msg = denied(&hook, |r| {
        r["request"]["object"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("serviceAccountName");
    })
    .await;
    assert!(
        msg.contains("ServiceAccount default may not use MailCredential mail/smtp"),
        "{msg}"
    );

    let msg = denied(&hook, annotate("smtp,,other")).await;
    assert_eq!(
        msg,
        "mailcred: annotation mailcred.io/inject=\"smtp,,other\" has an empty entry at position 2; write names separated by single commas"
    );

    let msg = denied(&hook, annotate("SMTP")).await;
    assert!(
        msg.contains("\"SMTP\" is not a valid MailCredential name"),
        "{msg}"
    );

    let msg = denied(&hook, annotate("smtp, smtp")).await;
    assert_eq!(
        msg,
        "mailcred: annotation mailcred.io/inject names MailCredential \"smtp\" twice; list each credential once"
    );

    let msg = denied(&hook, |r| {
        r["request"]["object"]["spec"]["hostNetwork"] = json!(true)
    })
    .await;
    assert!(
        msg.contains(
            "the pod uses hostNetwork: the sidecar's loopback listeners would be the node's"
        ),
        "{msg}"
    );

    assert_eq!(hook.count("denied"), 7);
}

#[tokio::test]
async fn admit_policy_admits_uninjected_with_a_warning() {
    let hook = start(InvalidPodPolicy::Admit, SidecarMode::Native, vec![]).await;
    let review = fixture("pod-create.json");
    let (status, answer) = hook.post(&review).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    assert_eq!(
        answer["response"]["warnings"],
        json!([
            "mailcred: MailCredential mail/smtp does not exist; create it (kubectl mailcred seal) or fix the mailcred.io/inject annotation (admitted without the mailcred sidecar)"
        ])
    );
    assert_eq!(hook.count("admitted_uninjected"), 1);
}
