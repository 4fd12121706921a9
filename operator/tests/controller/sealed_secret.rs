//! The sealed secret: malformed, of an unknown version or kind, under a bad key id, and a real
//! one sealed by the core.

use crate::common::credential;
use crate::support::*;
use serde_json::json;

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
