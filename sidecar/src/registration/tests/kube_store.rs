//! The kube store's HTTP calls against kube's mock service: POST with the set and owner
//! labels, 409 as AlreadyExists, list by labelSelector with the cap, GET 404 as None, DELETE
//! with the uid precondition.

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

use super::super::store::{AccountStore, KubeStore, StoreError};
use super::*;

const BASE: &str = "/apis/mailcred.io/v1alpha1/namespaces/shop/mailcredentials";

fn json_response(code: u16, value: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&value).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
}

#[tokio::test]
async fn create_list_get_delete_are_the_api_calls_they_should_be() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let store = KubeStore::new(kube::Client::new(service, "default"), NAMESPACE);
    let f = fixture(Answer::Accept);
    let server = tokio::spawn(async move {
        // create: POST with the labels; then the same again: 409.
        for answer in [201, 409] {
            let (req, send) = handle.next_request().await.expect("create");
            assert_eq!(req.method(), Method::POST);
            assert_eq!(req.uri().path(), BASE);
            let body: Value =
                serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
            assert_eq!(body["metadata"]["labels"]["mailcred.io/account-set"], SET);
            assert_eq!(body["metadata"]["labels"]["mailcred.io/registered-by"], SA);
            assert_eq!(body["spec"]["access"]["serviceAccounts"], json!([SA]));
            let reply = if answer == 201 {
                body
            } else {
                status(409, "AlreadyExists")
            };
            send.send_response(json_response(answer, reply));
        }
        let (req, send) = handle.next_request().await.expect("list");
        assert_eq!(req.method(), Method::GET);
        let uri = req.uri().to_string();
        assert!(uri.starts_with(&format!("{BASE}?")), "{uri}");
        assert!(
            uri.contains("labelSelector=mailcred.io%2Faccount-set%3Dcrm"),
            "{uri}"
        );
        assert!(uri.contains("limit=10000"), "{uri}");
        send.send_response(json_response(
            200,
            json!({
                "apiVersion": "mailcred.io/v1alpha1", "kind": "MailCredentialList",
                "metadata": {"resourceVersion": "5", "continue": "more"}, "items": [],
            }),
        ));
        let (req, send) = handle.next_request().await.expect("get");
        assert_eq!(req.uri().path(), format!("{BASE}/nobody"));
        send.send_response(json_response(404, status(404, "NotFound")));
        let (req, send) = handle.next_request().await.expect("delete");
        assert_eq!(req.method(), Method::DELETE);
        assert_eq!(req.uri().path(), format!("{BASE}/alice"));
        let body: Value =
            serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
        assert_eq!(body["preconditions"]["uid"], "uid-alice");
        send.send_response(json_response(200, status(200, "Success")));
    });
    // A real sealed resource from the API's own path.
    let (code, _, _) = call(&f.api, post(good().to_string())).await;
    assert_eq!(code.as_u16(), 201);
    let resource = f.store.get_now("alice").unwrap();
    store.create(&resource).await.unwrap();
    assert!(matches!(
        store.create(&resource).await,
        Err(StoreError::AlreadyExists)
    ));
    let listed = store
        .list("mailcred.io/account-set=crm", super::super::MAX_LIST)
        .await
        .unwrap();
    assert!(listed.items.is_empty() && listed.truncated);
    assert!(store.get("nobody").await.unwrap().is_none());
    assert!(store.delete("alice", Some("uid-alice")).await.unwrap());
    server.await.unwrap();
}
