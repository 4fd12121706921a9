//! The API's bounds: requests in flight (503 + Retry-After), the per-request timeout (504),
//! and which sealing keys the flags accept.

use super::*;

#[tokio::test]
async fn a_busy_api_answers_503_with_retry_after_and_a_hung_upstream_times_out_storing_nothing() {
    let mut a = args();
    a.registration_max_in_flight = 1;
    a.registration_timeout_seconds = 1;
    let f = fixture_with(Answer::Hang, &a);
    let api = f.api.clone();
    let first = tokio::spawn(async move { call(&api, post(good().to_string())).await });
    // Until the first holds its slot (it hangs in the login check).
    while f.checker.calls() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (status, body, headers) = call(&f.api, post(good().to_string())).await;
    assert_eq!(status.as_u16(), 503, "{body}");
    assert_eq!(body["error"]["code"], "busy");
    assert_eq!(headers["retry-after"], "1");
    let (status, body, _) = first.await.unwrap();
    assert_eq!(status.as_u16(), 504, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    assert_eq!(f.store.len(), 0);
    assert_eq!(f.store.creates.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_sealer_is_the_one_the_flags_name_and_an_untrusted_kms_endpoint_is_refused() {
    use super::super::build_sealer;
    let timeout = std::time::Duration::from_secs(1);
    let none = build_sealer(&args(), None, &[], timeout)
        .await
        .err()
        .unwrap();
    assert!(none.to_string().contains("needs a sealing key"), "{none}");
    let mut a = args();
    a.seal_kms_key = Some("arn:aws:kms:us-east-1:111122223333:key/x".into());
    a.seal_kms_endpoint = Some("http://127.0.0.1:9/".into());
    let untrusted = build_sealer(&a, None, &["http://127.0.0.1:4566".into()], timeout)
        .await
        .err()
        .unwrap();
    assert!(
        untrusted
            .to_string()
            .contains("not one of --trusted-kms-endpoints"),
        "{untrusted}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    LocalKms::generate()
        .unwrap()
        .write_new_key_file(&path)
        .unwrap();
    let local = build_sealer(&args(), Some(&path), &[], timeout)
        .await
        .unwrap();
    assert_eq!(
        local.key_ref().provider,
        mailcred_core::crd::KmsProviderKind::Local
    );
}
