//! The whole flow with a local sealing key and an accepting checker: create, what is stored,
//! list, show, delete.

use mailcred_core::accounts::{ACCOUNT_SET_LABEL, REGISTERED_BY_LABEL};
use serde_json::json;

use super::*;

#[tokio::test]
async fn a_registration_is_sealed_labelled_owned_and_listed_then_deleted() {
    let f = fixture(Answer::Accept);
    let (status, body, headers) = call(&f.api, post(good().to_string())).await;
    assert_eq!(status.as_u16(), 201, "{body}");
    assert_eq!(body["name"], "alice");
    assert_eq!(body["username"], "alice@example.test");
    assert!(
        body["expiresAt"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{body}"
    );
    assert_eq!(headers["location"], "/v1/accounts/alice");
    assert!(!body.to_string().contains("battery"), "{body}");
    assert_eq!(f.checker.calls(), 2, "SMTP and IMAP both checked");

    let stored = f.store.get_now("alice").expect("stored");
    let labels = stored.metadata.labels.clone().unwrap();
    assert_eq!(labels[ACCOUNT_SET_LABEL], SET);
    assert_eq!(labels[REGISTERED_BY_LABEL], SA);
    assert_eq!(stored.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(stored.spec.access.service_accounts, vec![SA.to_string()]);
    assert_eq!(
        stored.spec.policy.smtp.allowed_senders,
        vec!["alice@example.test"]
    );
    let expires = stored.spec.expires_at.clone().unwrap().0;
    let in_an_hour = k8s_openapi::jiff::Timestamp::now().as_second() + 3600;
    assert!((expires.as_second() - in_an_hour).abs() <= 5, "{expires}");
    // The sealed secret opens, with the decrypting key the sealer never had, to the password.
    let opened = mailcred_core::credential::open(&stored, f.key.as_ref())
        .await
        .unwrap();
    assert_eq!(
        opened.auth.password().unwrap().expose(),
        "correct horse battery staple"
    );

    let (status, body, _) = call(&f.api, authed("GET", "/v1/accounts")).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(body["truncated"], false);
    let accounts = body["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["status"], "ready");
    assert_eq!(
        accounts[0]["smtp"],
        json!({"host": "smtp.example.test", "port": 587, "tls": "starttls"})
    );
    for secret in ["ciphertext", "encryptedDataKey", "battery", "policy"] {
        assert!(!body.to_string().contains(secret), "{body}");
    }
    let (status, one, _) = call(&f.api, authed("GET", "/v1/accounts/alice")).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(one, accounts[0]);

    let (status, _, _) = call(&f.api, authed("DELETE", "/v1/accounts/alice")).await;
    assert_eq!(status.as_u16(), 204);
    assert_eq!(f.store.len(), 0);
    let (status, body, _) = call(&f.api, authed("DELETE", "/v1/accounts/alice")).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].clone()),
        (404, json!("not_found"))
    );
}

#[tokio::test]
async fn a_name_is_generated_when_none_is_given() {
    let f = fixture(Answer::Accept);
    let mut body = good();
    body.as_object_mut().unwrap().remove("name");
    body.as_object_mut().unwrap().remove("lifetimeSeconds");
    let (status, reply, _) = call(&f.api, post(body.to_string())).await;
    assert_eq!(status.as_u16(), 201, "{reply}");
    let name = reply["name"].as_str().unwrap();
    assert!(name.starts_with("acct-") && name.len() == 15, "{name}");
    assert!(
        name[5..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert!(reply.get("expiresAt").is_none());
    assert!(f.store.get_now(name).unwrap().spec.expires_at.is_none());
}

#[tokio::test]
async fn a_server_that_echoes_the_password_does_not_get_it_into_the_answer() {
    let f = fixture(Answer::EchoPassword);
    let (status, body, _) = call(&f.api, post(good().to_string())).await;
    assert_eq!(status.as_u16(), 422);
    assert!(!body.to_string().contains("correct horse"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[redacted]"),
        "{body}"
    );
    assert_eq!(f.store.len(), 0);
}
