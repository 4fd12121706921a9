//! What a valid credential gets: the exact Role, RoleBinding, status and Events; and a credential
//! being deleted gets nothing.

use std::time::Duration;

use crate::common::credential;
use crate::support::*;
use kube::runtime::controller::Action;
use serde_json::json;

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
async fn a_credential_being_deleted_is_left_to_the_garbage_collector() {
    let obj = credential(|v| {
        v["metadata"]["deletionTimestamp"] = json!("2026-11-23T06:00:00Z");
        v["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    });
    let (result, log) = run(obj).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(log.is_empty(), "no request at all: {log:#?}");
}
