//! The Kubernetes store against a fake API server on kube's mock service: GET, and PUT with the
//! resourceVersion precondition the real API server applies (409 Conflict when it moved on).
//! Through the whole service: a link sealed while the operator patches status still writes
//! once, and a second submit finds the link used.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::{Request, Response};
use kube::client::Body as KubeBody;
use mailcred_linkpage::keys::PublicKeys;
use mailcred_linkpage::limit::BadTokenLimiter;
use mailcred_linkpage::service::Service;
use mailcred_linkpage::store::{KubeStore, Store, StoreError};
use serde_json::{Value, json};

type Objects = Arc<Mutex<HashMap<String, (u64, Value)>>>;

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
}

/// Answers like the API server for one resource kind: GET by name, PUT with precondition.
fn fake_api(objects: Objects) -> kube::Client {
    let (service, handle) = tower_test::mock::pair::<Request<KubeBody>, Response<KubeBody>>();
    tokio::spawn(async move {
        let mut handle = std::pin::pin!(handle);
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let (code, reply) = {
                let mut objects = objects.lock().unwrap();
                match (method.as_str(), objects.get_mut(&path)) {
                    ("GET", Some((rv, obj))) => {
                        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                        (200, obj.clone())
                    }
                    ("PUT", Some((rv, obj))) => {
                        let sent: Value = serde_json::from_slice(&bytes).unwrap();
                        if sent["metadata"]["resourceVersion"] != json!(rv.to_string()) {
                            (409, status(409, "Conflict"))
                        } else {
                            *rv += 1;
                            obj["spec"] = sent["spec"].clone();
                            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                            (200, obj.clone())
                        }
                    }
                    _ => (404, status(404, "NotFound")),
                }
            };
            send.send_response(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(KubeBody::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    kube::Client::new(service, "default")
}

const PATH: &str = "/apis/mailcred.io/v1alpha1/namespaces/shop/mailcredentials/billing";

#[tokio::test]
async fn replace_is_refused_once_the_object_moved_on() {
    let f = fixture(10);
    let (resource, _token) = pending(&f.key, "shop", "billing", 10);
    let objects: Objects = Arc::default();
    objects
        .lock()
        .unwrap()
        .insert(PATH.into(), (7, serde_json::to_value(&resource).unwrap()));
    let store = KubeStore::new(fake_api(objects.clone()));
    assert!(store.get("shop", "nobody").await.unwrap().is_none());
    let read = store.get("shop", "billing").await.unwrap().unwrap();
    assert_eq!(read.version, "7");
    // The operator patches status meanwhile: the version moves.
    objects.lock().unwrap().get_mut(PATH).unwrap().0 = 8;
    assert!(matches!(
        store.replace(&read.resource, &read.version).await,
        Err(StoreError::Conflict)
    ));
    let again = store.get("shop", "billing").await.unwrap().unwrap();
    store
        .replace(&again.resource, &again.version)
        .await
        .unwrap();
    assert_eq!(objects.lock().unwrap()[PATH].0, 9);
}

#[tokio::test]
async fn sealing_through_the_api_writes_once_and_marks_the_link_used() {
    let f = fixture(10);
    let (resource, token) = pending(&f.key, "shop", "billing", 10);
    let objects: Objects = Arc::default();
    objects
        .lock()
        .unwrap()
        .insert(PATH.into(), (1, serde_json::to_value(&resource).unwrap()));
    let public = f.dir.path().join("key.pub");
    let service = Arc::new(Service {
        store: Arc::new(KubeStore::new(fake_api(objects.clone()))),
        keys: PublicKeys::load(&[format!("local:{}", public.display())]).unwrap(),
        limiter: BadTokenLimiter::new(10, Duration::from_secs(60)),
        now,
    });
    let client = "127.0.0.1".parse().unwrap();
    let opened = service
        .open(
            client,
            link_json("shop", "billing", token.expose())
                .to_string()
                .as_bytes(),
        )
        .await
        .unwrap();
    let body = page_seal_body(
        &f.key,
        &resource,
        token.expose(),
        opened["aadSha256"].as_str().unwrap(),
        "pw-kube",
    )
    .await;
    // A status patch lands between open and seal: the first write conflicts, the retry wins.
    objects.lock().unwrap().get_mut(PATH).unwrap().0 = 2;
    service
        .seal(client, body.to_string().as_bytes())
        .await
        .unwrap();
    let stored = objects.lock().unwrap()[PATH].1.clone();
    assert!(
        stored["spec"]["sealRequest"]["usedAt"].is_string(),
        "{stored}"
    );
    assert!(stored["spec"]["sealedSecret"]["ciphertext"].is_string());
    let refused = service
        .seal(client, body.to_string().as_bytes())
        .await
        .unwrap_err();
    assert_eq!(refused.label(), "used");
    let resource: mailcred_core::crd::MailCredential = serde_json::from_value(stored).unwrap();
    let opened = mailcred_core::credential::open(&resource, &f.key)
        .await
        .unwrap();
    assert_eq!(
        opened.auth.password().expect("password").expose(),
        "pw-kube"
    );
}
