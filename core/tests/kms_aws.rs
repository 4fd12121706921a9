//! The AWS provider against a real AWS-KMS-compatible endpoint (moto's server, started by
//! e2e/peers/start.sh) and against KMS error answers.

mod common;

use std::time::Duration;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use mailcred_core::kms::{AwsKms, AwsKmsOptions, AwsKmsSealer};
use mailcred_core::{CredentialBinding, Error, KmsError, envelope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{binding, password, spec};

/// The moto endpoint from the peers' env file (MAILCRED_PEERS_ENV).
fn moto_endpoint() -> String {
    mailcred_core::testkit::peers_env()
        .get("PEERS_KMS_ENDPOINT")
        .to_string()
}

/// SDK settings for one test; the env-based credential chain sees these (moto accepts any).
fn set_test_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: runs once, before any SDK client reads the environment; test constants only.
    ONCE.call_once(|| unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::remove_var("AWS_ENDPOINT_URL");
        std::env::remove_var("AWS_PROFILE");
    });
}

async fn options_trusting(endpoint: &str) -> AwsKms {
    AwsKms::from_env(AwsKmsOptions {
        trusted_endpoints: vec![endpoint.to_string()],
        timeout: Duration::from_secs(10),
    })
    .await
}

async fn create_key(endpoint: &str) -> String {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&sdk)
            .endpoint_url(endpoint)
            .build(),
    );
    let key = client
        .create_key()
        .key_spec(KeySpec::SymmetricDefault)
        .key_usage(KeyUsageType::EncryptDecrypt)
        .description("mailcred test")
        .send()
        .await
        .expect("CreateKey on moto");
    key.key_metadata.expect("metadata").arn.expect("arn")
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn seal_and_open_through_kms() {
    set_test_credentials();
    let endpoint = moto_endpoint();
    let arn = create_key(&endpoint).await;
    let sealer = AwsKmsSealer::new(
        options_trusting(&endpoint).await,
        arn.clone(),
        None,
        Some(endpoint.clone()),
    );
    let sealed = envelope::seal(&sealer, &binding(), &password("through-kms"))
        .await
        .unwrap();
    assert_eq!(sealed.kms.key_id, arn);
    assert_eq!(sealed.kms.region.as_deref(), Some("us-east-1"));
    assert_eq!(sealed.kms.endpoint.as_deref(), Some(endpoint.as_str()));

    let kms = options_trusting(&endpoint).await;
    let opened = envelope::open(&kms, &binding(), &sealed).await.unwrap();
    assert_eq!(opened.expose(), "through-kms");

    // Moved to another namespace: KMS itself refuses (encryption context mismatch).
    let moved = CredentialBinding::new("other", "billing", &spec()).unwrap();
    let err = envelope::open(&kms, &moved, &sealed).await.unwrap_err();
    assert!(
        matches!(err, Error::Kms(KmsError::ContextMismatch { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("another namespace/name"), "{err}");

    // A different key id that exists: KMS refuses the ciphertext under it.
    let other_arn = create_key(&endpoint).await;
    let mut relabelled = sealed.clone();
    relabelled.kms.key_id = other_arn;
    let err = envelope::open(&kms, &binding(), &relabelled)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Kms(_) | Error::SealedSecretMismatch),
        "{err:?}"
    );

    // A key id that does not exist.
    let mut missing = sealed.clone();
    missing.kms.key_id =
        "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000".into();
    let err = envelope::open(&kms, &binding(), &missing)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Kms(KmsError::KeyNotFound { .. } | KmsError::ContextMismatch { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn an_endpoint_the_sidecar_does_not_trust_is_never_called() {
    set_test_credentials();
    let endpoint = moto_endpoint();
    let arn = create_key(&endpoint).await;
    let sealer = AwsKmsSealer::new(
        options_trusting(&endpoint).await,
        arn,
        None,
        Some(endpoint.clone()),
    );
    let mut sealed = envelope::seal(&sealer, &binding(), &password("pw"))
        .await
        .unwrap();
    sealed.kms.endpoint = Some("http://127.0.0.1:9/attacker".into());
    let kms = options_trusting(&endpoint).await;
    let err = envelope::open(&kms, &binding(), &sealed).await.unwrap_err();
    assert!(
        matches!(err, Error::Kms(KmsError::UntrustedEndpoint { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("MAILCRED_TRUSTED_KMS_ENDPOINTS"),
        "{err}"
    );
}

/// A loopback HTTP server that answers every request with one KMS JSON error.
async fn kms_error_server(status: u16, error_type: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                // Read headers and the (small) body, bounded.
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let headers = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                        let len: usize = headers
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let body = format!(r#"{{"__type":"{error_type}","message":"test says no"}}"#);
                let response = format!(
                    "HTTP/1.1 {status} Error\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: {error_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

async fn open_against(endpoint: &str) -> Error {
    set_test_credentials();
    let local = mailcred_core::kms::LocalKms::generate().unwrap();
    let mut sealed = envelope::seal(&local, &binding(), &password("pw"))
        .await
        .unwrap();
    sealed.kms = mailcred_core::crd::KmsKeyRef {
        provider: mailcred_core::crd::KmsProviderKind::Aws,
        key_id: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
            .into(),
        wrapping: Default::default(),
        region: None,
        endpoint: Some(endpoint.to_string()),
    };
    let kms = AwsKms::from_env(AwsKmsOptions {
        trusted_endpoints: vec![endpoint.to_string()],
        timeout: Duration::from_secs(20),
    })
    .await;
    envelope::open(&kms, &binding(), &sealed).await.unwrap_err()
}

#[tokio::test]
async fn kms_error_answers_map_to_actionable_errors() {
    type Case = (u16, &'static str, fn(&KmsError) -> bool, &'static str);
    let cases: [Case; 5] = [
        (
            400,
            "AccessDeniedException",
            |e| matches!(e, KmsError::AccessDenied { .. }),
            "grant kms:Decrypt",
        ),
        (
            400,
            "DisabledException",
            |e| matches!(e, KmsError::KeyDisabled { .. }),
            "disabled",
        ),
        (
            400,
            "KMSInvalidStateException",
            |e| matches!(e, KmsError::KeyDisabled { .. }),
            "pending deletion",
        ),
        (
            400,
            "NotFoundException",
            |e| matches!(e, KmsError::KeyNotFound { .. }),
            "does not exist",
        ),
        (
            400,
            "InvalidCiphertextException",
            |e| matches!(e, KmsError::ContextMismatch { .. }),
            "re-seal",
        ),
    ];
    for (status, error_type, expected, hint) in cases {
        let endpoint = kms_error_server(status, error_type).await;
        let err = open_against(&endpoint).await;
        let Error::Kms(kms) = &err else {
            panic!("{error_type}: expected a KMS error, got {err:?}")
        };
        assert!(expected(kms), "{error_type}: got {kms:?}");
        assert!(err.to_string().contains(hint), "{error_type}: {err}");
        assert!(!err.is_transient(), "{error_type} is not transient");
    }
}

#[tokio::test]
async fn unreachable_kms_is_a_transient_error() {
    // Bind then drop: a loopback port with nothing listening refuses connections at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = open_against(&format!("http://127.0.0.1:{port}")).await;
    assert!(
        matches!(err, Error::Kms(KmsError::Unreachable { .. })),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(err.metric_label(), "kms_unreachable");
}
