//! The AdmissionReview protocol: wrong versions, missing parts and garbage never panic, other
//! operations pass through, and the answer comes over HTTP/2 as the API server speaks it.

use crate::support::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use mailcred_operator::config::{InvalidPodPolicy, SidecarMode};
use serde_json::{Value, json};

#[tokio::test]
async fn wrong_version_no_request_no_object_and_garbage_never_panic() {
    let hook = start(
        InvalidPodPolicy::Deny,
        SidecarMode::Native,
        vec![ready_credential("smtp", &["mailer"])],
    )
    .await;

    let (status, answer) = hook.post(&fixture("review-v1beta1.json")).await;
    assert_eq!(status, 400);
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(
        answer["response"]["status"]["message"],
        "mailcred: expected kind AdmissionReview, apiVersion admission.k8s.io/v1; got kind \"AdmissionReview\", apiVersion \"admission.k8s.io/v1beta1\"; set admissionReviewVersions: [\"v1\"] in the MutatingWebhookConfiguration"
    );

    let (status, answer) = hook.post(&fixture("review-no-request.json")).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["response"]["status"]["message"],
        "mailcred: AdmissionReview has no request"
    );

    let (status, answer) = hook.post(&fixture("review-no-object.json")).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["response"]["uid"],
        "3b1f1d6e-8a0c-4f43-9d2e-6f1a2b3c4d5e"
    );
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(
        answer["response"]["status"]["message"],
        "mailcred: AdmissionReview 3b1f1d6e-8a0c-4f43-9d2e-6f1a2b3c4d5e is a Pod CREATE without an object; nothing to inspect"
    );

    let (status, answer) = hook.post(&json!(["not", "a", "review"])).await;
    assert_eq!(status, 400);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("expected kind AdmissionReview")
    );

    let mut not_a_pod = fixture("pod-create.json");
    not_a_pod["request"]["object"]["spec"] = json!({"containers": "nope"});
    let (status, answer) = hook.post(&not_a_pod).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("mailcred: the object is not a valid Pod")
    );

    // Operations other than CREATE pass through untouched.
    let mut update = fixture("pod-create.json");
    update["request"]["operation"] = json!("UPDATE");
    let (status, answer) = hook.post(&update).await;
    assert_eq!(
        (status, answer["response"]["allowed"].clone()),
        (200, json!(true))
    );
    assert!(answer["response"].get("patch").is_none());

    assert_eq!(hook.count("invalid"), 3);
}

#[tokio::test]
async fn answers_over_http2_as_the_api_server_speaks_it() {
    let hook = start(
        InvalidPodPolicy::Deny,
        SidecarMode::Native,
        vec![ready_credential("smtp", &["mailer"])],
    )
    .await;
    let review = fixture("pod-create.json");
    let request = hyper::Request::post(&hook.url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&review).unwrap())))
        .unwrap();
    let response = hook
        .h2_client
        .request(request)
        .await
        .expect("HTTP/2 over TLS (ALPN h2)");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let answer: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"]["patch"].is_string());
}
