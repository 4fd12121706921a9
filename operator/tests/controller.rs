//! The reconciler against kube's mock API service: exact requests, exact Role/RoleBinding,
//! status conditions, Events, and no status patch when nothing changed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Recorded, credential, echo, fake_client, status_error};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use mailcred_core::crd::{MailCredential, MailCredentialStatus};
use mailcred_operator::controller::{Context, error_policy, reconcile};
use mailcred_operator::metrics::Metrics;
use serde_json::{Value, json};

const APPLY_QUERY: &str = "?&force=true&fieldManager=mailcred-operator";
const ROLE_URI: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/mail/roles/mailcred-smtp";
const BINDING_URI: &str =
    "/apis/rbac.authorization.k8s.io/v1/namespaces/mail/rolebindings/mailcred-smtp";
const STATUS_URI: &str = "/apis/mailcred.io/v1alpha1/namespaces/mail/mailcredentials/smtp/status";
const EVENTS_URI: &str = "/apis/events.k8s.io/v1/namespaces/mail/events?";

fn fixed_now() -> Time {
    Time("2026-11-23T06:00:00Z".parse().unwrap())
}

fn context(client: kube::Client) -> Arc<Context> {
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

fn owner() -> Value {
    json!([{
        "apiVersion": "mailcred.io/v1alpha1",
        "kind": "MailCredential",
        "name": "smtp",
        "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "controller": true
    }])
}

fn requests(log: &common::Log) -> Vec<Recorded> {
    log.lock().unwrap().clone()
}

fn status_of(r: &Recorded) -> MailCredentialStatus {
    assert_eq!(r.method, "PATCH");
    assert_eq!(r.uri, format!("{STATUS_URI}{APPLY_QUERY}"));
    assert_eq!(r.body["apiVersion"], "mailcred.io/v1alpha1");
    assert_eq!(r.body["kind"], "MailCredential");
    serde_json::from_value(r.body["status"].clone()).expect("status body")
}

fn condition<'a>(
    s: &'a MailCredentialStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {s:?}"))
}

/// Events posted, as (type, reason, note).
fn events(log: &[Recorded]) -> Vec<(String, String, String)> {
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

async fn run(obj: MailCredential) -> (Result<Action, mailcred_operator::Error>, Vec<Recorded>) {
    let (client, log) = fake_client(echo);
    let ctx = context(client);
    let result = reconcile(Arc::new(obj), ctx).await;
    (result, requests(&log))
}

#[tokio::test]
async fn valid_credential_gets_exact_role_binding_status_and_events() {
    let (result, log) = run(credential(|_| {})).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(600)));
    assert_eq!(log.len(), 7, "role, binding, status, 4 events: {log:#?}");

    assert_eq!(log[0].method, "PATCH");
    assert_eq!(log[0].uri, format!("{ROLE_URI}{APPLY_QUERY}"));
    assert_eq!(
        log[0].body,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {
                "name": "mailcred-smtp",
                "namespace": "mail",
                "labels": {"app.kubernetes.io/managed-by": "mailcred-operator", "mailcred.io/credential": "smtp"},
                "ownerReferences": owner()
            },
            "rules": [{
                "apiGroups": ["mailcred.io"],
                "resources": ["mailcredentials"],
                "resourceNames": ["smtp"],
                "verbs": ["get", "list", "watch"]
            }]
        })
    );

    assert_eq!(log[1].method, "PATCH");
    assert_eq!(log[1].uri, format!("{BINDING_URI}{APPLY_QUERY}"));
    assert_eq!(
        log[1].body,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {
                "name": "mailcred-smtp",
                "namespace": "mail",
                "labels": {"app.kubernetes.io/managed-by": "mailcred-operator", "mailcred.io/credential": "smtp"},
                "ownerReferences": owner()
            },
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mailcred-smtp"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "mailer", "namespace": "mail"},
                {"kind": "ServiceAccount", "name": "reporter", "namespace": "mail"}
            ]
        })
    );

    let status = status_of(&log[2]);
    assert_eq!(status.observed_generation, Some(1));
    assert!(
        status
            .sealed_secret_fingerprint
            .as_deref()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(status.insecure_endpoints.is_empty());
    let types: Vec<_> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("Ready", "True", "Ready"),
            ("Sealed", "True", "SealedSecretValid"),
            ("AccessConfigured", "True", "RoleBound"),
            ("InsecureUpstream", "False", "TlsVerified"),
        ]
    );
    for c in &status.conditions {
        assert_eq!(c.last_transition_time, fixed_now());
        assert_eq!(c.observed_generation, Some(1));
    }
    assert!(
        condition(&status, "AccessConfigured")
            .message
            .contains("ServiceAccounts mailer, reporter may get/list/watch")
    );

    let ev = events(&log);
    assert_eq!(
        ev.iter()
            .map(|(t, r, _)| (t.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        [
            ("Normal", "Ready"),
            ("Normal", "SealedSecretValid"),
            ("Normal", "RoleBound"),
            ("Normal", "TlsVerified")
        ]
    );
}

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

/// Runs a bad credential; returns its status and the Events.
async fn bad(
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

fn assert_not_ready(
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

#[tokio::test]
async fn malformed_sealed_secret() {
    let (status, events) = bad(|v| v["spec"]["sealedSecret"]["nonce"] = json!("not base64!")).await;
    let sealed = condition(&status, "Sealed");
    assert_eq!(
        (sealed.status.as_str(), sealed.reason.as_str()),
        ("False", "MalformedSealedSecret")
    );
    assert!(
        sealed
            .message
            .contains("spec.sealedSecret.nonce is malformed: not valid base64")
    );
    assert!(
        sealed
            .message
            .contains("re-seal with `kubectl mailcred seal`")
    );
    assert_eq!(status.sealed_secret_fingerprint, None);
    assert_not_ready(
        &status,
        &events,
        "MalformedSealedSecret",
        "spec.sealedSecret.nonce is malformed",
    );
}

#[tokio::test]
async fn unknown_format_version() {
    let (status, events) = bad(|v| v["spec"]["sealedSecret"]["version"] = json!(9)).await;
    assert_not_ready(
        &status,
        &events,
        "UnsupportedVersion",
        "sealed secret format version 9 is not supported (this build reads versions 1 to 2); upgrade mailcred or re-seal",
    );
}

#[tokio::test]
async fn a_grant_envelope_without_spec_oauth() {
    let (status, events) = bad(|v| v["spec"]["sealedSecret"]["version"] = json!(2)).await;
    assert_not_ready(
        &status,
        &events,
        "SealedKindMismatch",
        "the sealed secret is an OAuth grant (envelope version 2) but spec.oauth is not set",
    );
}

#[tokio::test]
async fn key_id_of_the_wrong_shape() {
    let (status, events) =
        bad(|v| v["spec"]["sealedSecret"]["kms"] = json!({"provider": "aws", "keyId": "my key"}))
            .await;
    assert_not_ready(
        &status,
        &events,
        "InvalidKeyId",
        "\"my key\" is not an AWS KMS key ARN, alias or key id",
    );
}

#[tokio::test]
async fn no_endpoints() {
    let (status, events) = bad(|v| {
        let spec = v["spec"].as_object_mut().unwrap();
        spec.remove("smtp");
        spec.remove("imap");
    })
    .await;
    assert_not_ready(
        &status,
        &events,
        "NoEndpoints",
        "neither spec.smtp nor spec.imap is set",
    );
}

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

#[tokio::test]
async fn empty_service_account_list_revokes_and_says_so() {
    let (client, log) = fake_client(echo);
    let obj = credential(|v| v["spec"]["access"]["serviceAccounts"] = json!([]));
    reconcile(Arc::new(obj), context(client)).await.unwrap();
    let log = requests(&log);
    assert_eq!(log[1].uri, format!("{BINDING_URI}{APPLY_QUERY}"));
    assert_eq!(
        log[1].body["subjects"],
        json!([]),
        "an empty list is applied: earlier grants go"
    );
    let status = status_of(&log[2]);
    let access = condition(&status, "AccessConfigured");
    assert_eq!(
        (access.status.as_str(), access.reason.as_str()),
        ("False", "NoServiceAccounts")
    );
    assert_not_ready(
        &status,
        &events(&log),
        "NoServiceAccounts",
        "spec.access.serviceAccounts is empty, so no workload may use this credential",
    );
}

#[tokio::test]
async fn insecure_endpoint_is_reported() {
    let (status, events) = bad(|v| {
        v["spec"]["smtp"] = json!({"host": "relay.test", "port": 25, "tls": "none", "insecure": true, "insecureReason": "local test relay"});
    })
    .await;
    assert_eq!(status.insecure_endpoints, ["smtp relay.test:25"]);
    let c = condition(&status, "InsecureUpstream");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "PlaintextUpstream")
    );
    assert_eq!(
        condition(&status, "Ready").status,
        "True",
        "allowed, but visible"
    );
    assert!(events.iter().any(|(t, r, n)| t == "Warning"
        && r == "PlaintextUpstream"
        && n.contains("smtp relay.test:25")));
}

#[tokio::test]
async fn plaintext_without_the_insecure_flag_is_refused() {
    let (status, events) = bad(|v| v["spec"]["smtp"]["tls"] = json!("none")).await;
    assert_not_ready(
        &status,
        &events,
        "InsecureNotAllowed",
        "spec.smtp.tls is none (plaintext) but spec.smtp.insecure is not true",
    );
}

#[tokio::test]
async fn api_error_fails_the_reconcile_with_an_event_and_backs_off() {
    let (client, log) = fake_client(|r| {
        if r.uri.contains("/roles/") {
            (
                403,
                status_error(
                    403,
                    "Forbidden",
                    "roles.rbac.authorization.k8s.io is forbidden",
                ),
            )
        } else {
            echo(r)
        }
    });
    let ctx = context(client);
    let obj = Arc::new(credential(|_| {}));
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(err.metric_label(), "kube_forbidden");
    assert!(
        err.to_string().contains("applying Role mail/mailcred-smtp"),
        "{err}"
    );
    let log = requests(&log);
    assert_eq!(
        log.len(),
        2,
        "the failed apply, then the Event; nothing else: {log:#?}"
    );
    let ev = events(&log);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].0.as_str(), ev[0].1.as_str()),
        ("Warning", "ReconcileFailed")
    );
    assert!(
        ev[0].2.contains("applying Role mail/mailcred-smtp") && ev[0].2.contains("forbidden"),
        "{}",
        ev[0].2
    );

    assert_eq!(
        error_policy(obj.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(obj.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    assert_eq!(
        error_policy(obj, &err, ctx),
        Action::requeue(Duration::from_secs(20))
    );
}

#[tokio::test]
async fn real_sealed_secret_from_the_core_validates() {
    use mailcred_core::kms::LocalKms;
    use mailcred_core::{CredentialBinding, MailPassword, envelope};
    let mut obj = credential(|_| {});
    let kms = LocalKms::generate().unwrap();
    let binding = CredentialBinding::for_resource(&obj).unwrap();
    let password = MailPassword::new("correct horse battery staple".into()).unwrap();
    let sealed = envelope::seal(&kms, &binding, &password).await.unwrap();
    let fingerprint = envelope::fingerprint(&sealed);
    obj.spec.sealed_secret = Some(sealed);
    let (_, log) = run(obj).await;
    let status = status_of(&log[2]);
    assert_eq!(
        status.sealed_secret_fingerprint.as_deref(),
        Some(fingerprint.as_str())
    );
    assert_eq!(condition(&status, "Ready").status, "True");
    let body = format!("{log:?}");
    assert!(
        !body.contains("correct horse"),
        "no plaintext in any request"
    );
}

#[tokio::test]
async fn invalid_service_account_name_is_not_bound_and_reported() {
    let (client, log) = fake_client(echo);
    let obj = credential(|v| {
        v["spec"]["access"]["serviceAccounts"] = json!(["mailer", "Bad_Name", "mailer"])
    });
    reconcile(Arc::new(obj), context(client)).await.unwrap();
    let log = requests(&log);
    assert_eq!(
        log[1].body["subjects"],
        json!([{"kind": "ServiceAccount", "name": "mailer", "namespace": "mail"}]),
        "valid names bound once; the invalid one is not"
    );
    let status = status_of(&log[2]);
    let access = condition(&status, "AccessConfigured");
    assert_eq!(
        (access.status.as_str(), access.reason.as_str()),
        ("False", "InvalidServiceAccountName")
    );
    assert_not_ready(
        &status,
        &events(&log),
        "InvalidServiceAccountName",
        "spec.access.serviceAccounts[1] \"Bad_Name\" is not a valid ServiceAccount name",
    );
}

#[tokio::test]
async fn ca_pem_that_is_not_pem() {
    let (status, events) = bad(|v| v["spec"]["imap"]["caPem"] = json!("hello")).await;
    assert_not_ready(
        &status,
        &events,
        "InvalidCaPem",
        "spec.imap.caPem contains no PEM CERTIFICATE block",
    );
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

#[tokio::test]
async fn a_credential_being_deleted_is_left_to_the_garbage_collector() {
    let obj = credential(|v| {
        v["metadata"]["deletionTimestamp"] = json!("2026-11-23T06:00:00Z");
        v["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    });
    let (result, log) = run(obj).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(log.is_empty(), "no request at all: {log:#?}");
}
