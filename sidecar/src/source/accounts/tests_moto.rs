//! KMS Decrypt calls against real AWS KMS semantics (moto, e2e/peers): 200 concurrent first
//! uses over 20 accounts sealed with a moto key make exactly 20 Decrypt calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use mailcred_core::binding::EncryptionContext;
use mailcred_core::crd::KmsKeyRef;
use mailcred_core::kms::{AwsKms, AwsKmsOptions, AwsKmsSealer, KmsProvider};
use mailcred_core::testkit::{TestCredential, peers_env};
use mailcred_core::{DataKey, KmsError};

use super::super::SourceMetrics;
use super::{AccountSet, AccountSetConfig, AccountSetMetrics};

/// Counts the Decrypt requests the set makes of moto.
struct Counted {
    inner: AwsKms,
    calls: AtomicUsize,
}

#[async_trait]
impl KmsProvider for Counted {
    async fn decrypt_data_key(
        &self,
        key: &KmsKeyRef,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.decrypt_data_key(key, wrapped, context).await
    }
}

/// A fresh symmetric key on moto, made with the peers' boto3 (no AWS SDK dependency here).
fn create_key(endpoint: &str) -> String {
    // The peers' venv (start.sh's default: the repository's .venv), which has boto3.
    let venv = std::env::var("PEERS_VENV")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv").to_owned());
    let python = format!("{venv}/bin/python");
    let out = std::process::Command::new(python)
        .args(["-c", "import boto3,sys; c=boto3.client('kms', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test'); print(c.create_key()['KeyMetadata']['Arn'])", endpoint])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn aws(endpoint: &str) -> AwsKms {
    AwsKms::from_env(AwsKmsOptions {
        trusted_endpoints: vec![endpoint.to_owned()],
        timeout: Duration::from_secs(10),
    })
    .await
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh) and PEERS_VENV with boto3; run by scripts/test.sh"]
async fn one_moto_decrypt_per_account_under_200_concurrent_first_uses() {
    // SAFETY: test-only settings read by the SDK's env credential chain (moto takes any).
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    let endpoint = peers_env().get("PEERS_KMS_ENDPOINT").to_owned();
    let arn = create_key(&endpoint);
    let sealer = AwsKmsSealer::new(aws(&endpoint).await, arn, None, Some(endpoint.clone()));
    let set = AccountSet::new(
        AccountSetConfig {
            set: "crm".into(),
            namespace: "ns".into(),
            service_account: "app".into(),
            ttl: Duration::from_secs(60),
            cache_size: 1000,
        },
        AccountSetMetrics {
            source: SourceMetrics::default(),
            ..AccountSetMetrics::default()
        },
    );
    let kms = Arc::new(Counted {
        inner: aws(&endpoint).await,
        calls: AtomicUsize::new(0),
    });
    set.attach(kms.clone(), None);
    let mut all = Vec::new();
    for i in 0..20 {
        all.push(
            TestCredential::new("ns", &format!("acct-{i}"))
                .account_set("crm")
                .sealed(&sealer, &format!("pw-{i}"))
                .await,
        );
    }
    set.replace_all(all);
    let uses = (0..200).map(|i| {
        let set = set.clone();
        async move {
            let c = set.credential(&format!("acct-{}", i % 20)).await.unwrap();
            assert_eq!(
                c.auth.password().unwrap().expose(),
                format!("pw-{}", i % 20)
            );
        }
    });
    futures::future::join_all(uses).await;
    assert_eq!(kms.calls.load(Ordering::SeqCst), 20);
    assert_eq!(set.cached_plaintexts(), 20);
}
