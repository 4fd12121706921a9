//! `seal --kms aws:<arn>` and `verify` against a real AWS-KMS-compatible endpoint (moto).

use assert_cmd::Command;
use mailcred_core::testkit::{PeersEnv, peers_env};

async fn create_key(env: &PeersEnv) -> String {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&env["PEERS_KMS_ENDPOINT"])
        .credentials_provider(aws_sdk_kms::config::Credentials::for_tests())
        .load()
        .await;
    let client = aws_sdk_kms::Client::new(&sdk);
    let out = client.create_key().send().await.expect("CreateKey on moto");
    out.key_metadata.and_then(|m| m.arn).expect("key arn")
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn seal_with_aws_kms_then_verify() {
    let env = peers_env();
    let arn = create_key(&env).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcred.yaml");
    let aws_env = [
        ("AWS_ENDPOINT_URL", env.get("PEERS_KMS_ENDPOINT")),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let mut seal = Command::cargo_bin("kubectl-mailcred").unwrap();
    seal.envs(aws_env)
        .args([
            "seal",
            "--name",
            "orders",
            "--namespace",
            "shop",
            "--username",
            "app@example.test",
        ])
        .args(["--smtp", "localhost:10587", "--service-account", "orders"])
        .arg(format!("--kms=aws:{arn}"))
        .args(["--password-stdin", "-w"])
        .arg(&file)
        .write_stdin("kms-sealed-password\n")
        .assert()
        .success();
    let yaml = std::fs::read_to_string(&file).unwrap();
    assert!(
        yaml.contains("provider: aws") && yaml.contains(&arn),
        "{yaml}"
    );
    assert!(yaml.contains("region: us-east-1"), "{yaml}");
    assert!(!yaml.contains("kms-sealed-password"));

    let mut verify = Command::cargo_bin("kubectl-mailcred").unwrap();
    let out = verify
        .envs(aws_env)
        .args(["verify", "-f"])
        .arg(&file)
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).starts_with("ok: "));

    // The same ciphertext under another namespace: KMS refuses by encryption context.
    let moved = dir.path().join("moved.yaml");
    std::fs::write(
        &moved,
        yaml.replace("namespace: shop", "namespace: elsewhere"),
    )
    .unwrap();
    let mut verify = Command::cargo_bin("kubectl-mailcred").unwrap();
    let out = verify
        .envs(aws_env)
        .args(["verify", "-f"])
        .arg(&moved)
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("KMS refused to unwrap"), "{stderr}");
}
