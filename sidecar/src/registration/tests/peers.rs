//! The registration API against the real peers: postfix and dovecot check the login, moto's
//! KMS seals (GenerateDataKey), and what is stored opens (KMS Decrypt) to the password.

use std::sync::Arc;
use std::time::Duration;

use mailcred_core::kms::{AwsKms, AwsKmsOptions, AwsKmsSealer};
use mailcred_core::testkit::{PeersEnv, peers_env};
use serde_json::json;

use super::super::{MAX_LIST, UpstreamLoginChecker};
use super::*;

async fn moto_key(env: &PeersEnv) -> String {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&sdk)
            .endpoint_url(env.get("PEERS_KMS_ENDPOINT"))
            .build(),
    );
    let key = client.create_key().send().await.expect("CreateKey on moto");
    key.key_metadata.unwrap().arn.unwrap()
}

fn set_aws_env(env: &PeersEnv) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: once, before any SDK client reads the environment; test values only.
    ONCE.call_once(|| unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_REGION", env.get("AWS_REGION"));
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::remove_var("AWS_ENDPOINT_URL");
    });
}

async fn kms(env: &PeersEnv) -> AwsKms {
    AwsKms::from_env(AwsKmsOptions {
        trusted_endpoints: vec![env.get("PEERS_KMS_ENDPOINT").to_owned()],
        timeout: Duration::from_secs(10),
    })
    .await
}

fn body(env: &PeersEnv, name: &str, password: &str) -> String {
    let ca = env.ca_pem();
    json!({
        "name": name,
        "username": env.get("PEERS_USER"),
        "password": password,
        "smtp": {"host": env.get("PEERS_HOST"), "port": env.port("PEERS_SMTP_STARTTLS_PORT"), "tls": "starttls", "caPem": ca},
        "imap": {"host": env.get("PEERS_HOST"), "port": env.port("PEERS_IMAP_TLS_PORT"), "tls": "implicit", "caPem": ca},
        "lifetimeSeconds": 600,
    })
    .to_string()
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run with --include-ignored"]
async fn register_against_postfix_dovecot_and_moto_then_open_what_was_stored() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let env = peers_env();
    set_aws_env(&env);
    let endpoint = env.get("PEERS_KMS_ENDPOINT").to_owned();
    let sealer = AwsKmsSealer::new(kms(&env).await, moto_key(&env).await, None, Some(endpoint));
    let store = Arc::new(MemoryStore::default());
    let checker = Arc::new(UpstreamLoginChecker {
        timeout: Duration::from_secs(10),
    });
    let api = api_with(store.clone(), checker, Arc::new(sealer), &args());

    // Wrong password: both servers' verdicts come back as 422, nothing is stored.
    let wrong = format!("not-{}", env.get("PEERS_PASSWORD"));
    let (status, reply, _) = call(&api, post(body(&env, "wrong", &wrong))).await;
    assert_eq!(status.as_u16(), 422, "{reply}");
    assert_eq!(reply["error"]["code"], "login_failed");
    assert_eq!(reply["error"]["field"], "password");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("535") && message.contains("authentication failed"),
        "postfix's reason: {message}"
    );
    assert!(!reply.to_string().contains(&wrong));
    assert_eq!(store.len(), 0);
    // The same through IMAP alone: dovecot's reason.
    let mut imap_only: serde_json::Value =
        serde_json::from_str(&body(&env, "wrong", &wrong)).unwrap();
    imap_only.as_object_mut().unwrap().remove("smtp");
    let (status, reply, _) = call(&api, post(imap_only.to_string())).await;
    assert_eq!(status.as_u16(), 422, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("NO [AUTHENTICATIONFAILED]"),
        "dovecot's reason: {message}"
    );
    assert_eq!(store.len(), 0);

    // The right password: checked on both, sealed through moto, created.
    let (status, reply, _) = call(
        &api,
        post(body(&env, "peer-user", env.get("PEERS_PASSWORD"))),
    )
    .await;
    assert_eq!(status.as_u16(), 201, "{reply}");
    let stored = store.get_now("peer-user").unwrap();
    let sealed = stored.spec.sealed_secret.as_ref().unwrap();
    assert!(
        sealed.kms.key_id.starts_with("arn:aws:kms:"),
        "{:?}",
        sealed.kms
    );
    let opened = mailcred_core::credential::open(&stored, &kms(&env).await)
        .await
        .unwrap();
    assert_eq!(
        opened.auth.password().unwrap().expose(),
        env.get("PEERS_PASSWORD")
    );
    let listed = store
        .list("mailcred.io/account-set=crm", MAX_LIST)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);

    // An unverified certificate is a 502, not a login failure; nothing stored.
    let mut untrusted: serde_json::Value =
        serde_json::from_str(&body(&env, "tls", env.get("PEERS_PASSWORD"))).unwrap();
    untrusted["smtp"].as_object_mut().unwrap().remove("caPem");
    let (status, reply, _) = call(&api, post(untrusted.to_string())).await;
    assert_eq!(
        (status.as_u16(), reply["error"]["code"].as_str()),
        (502, Some("upstream_tls")),
        "{reply}"
    );
    assert_eq!(store.len(), 1);
}
