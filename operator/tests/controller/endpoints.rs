//! The upstream endpoints: none at all, plaintext with and without the insecure flag, a caPem
//! that is not PEM.

use crate::support::*;
use serde_json::json;

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
async fn ca_pem_that_is_not_pem() {
    let (status, events) = bad(|v| v["spec"]["imap"]["caPem"] = json!("hello")).await;
    assert_not_ready(
        &status,
        &events,
        "InvalidCaPem",
        "spec.imap.caPem contains no PEM CERTIFICATE block",
    );
}
