//! spec.access.serviceAccounts: an empty list revokes, an invalid name is not bound.

use std::sync::Arc;

use crate::common::{credential, echo, fake_client};
use crate::support::*;
use mailcred_operator::controller::reconcile;
use serde_json::json;

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
