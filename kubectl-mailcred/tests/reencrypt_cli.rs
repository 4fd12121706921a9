//! `reencrypt -f`: files rewritten in place (only the credentials' documents), the result
//! opened with the new key to the same password, the old key's ciphertext gone; `--dry-run`
//! writes nothing; and against moto with two KMS keys.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use mailcred_core::crd::MailCredential;
use mailcred_core::credential::from_yaml;
use mailcred_core::kms::{AwsKms, AwsKmsOptions, KmsProviders, LocalKms};
use mailcred_core::testkit::{PeersEnv, peers_env};
use mailcred_core::{CredentialBinding, envelope};

fn bin() -> Command {
    let mut c = Command::cargo_bin("kubectl-mailcred").unwrap();
    c.env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

fn seal(kms: &str, name: &str, password: &str, out: &Path, envs: &[(&str, &str)]) {
    bin()
        .envs(envs.iter().copied())
        .args(["seal", "--name", name, "--namespace", "shop"])
        .args([
            "--username",
            "app@example.test",
            "--smtp",
            "localhost:10587",
        ])
        .args([
            "--service-account",
            "app",
            "--kms",
            kms,
            "--password-stdin",
            "-w",
        ])
        .arg(out)
        .write_stdin(format!("{password}\n"))
        .assert()
        .success();
}

async fn password_of(
    resource: &MailCredential,
    providers: &KmsProviders,
) -> anyhow::Result<String> {
    let binding = CredentialBinding::for_resource(resource)?;
    let sealed = resource.spec.sealed_secret.as_ref().unwrap();
    Ok(envelope::open(providers, &binding, sealed)
        .await?
        .expose()
        .to_string())
}

fn local(key: &Path) -> KmsProviders {
    KmsProviders {
        local: Some(LocalKms::from_file(key).unwrap()),
        ..KmsProviders::default()
    }
}

fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    bin().args(["keygen", "-o"]).arg(&key).assert().success();
    key
}

const CONFIG: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg   # kept as typed\n";

#[tokio::test]
async fn files_are_rewritten_in_place_with_only_the_credentials_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (keygen(dir.path(), "one.key"), keygen(dir.path(), "two.key"));
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    seal(
        &format!("local:{}", k1.display()),
        "billing",
        "billing-Passw0rd",
        &a,
        &[],
    );
    seal(
        &format!("local:{}", k1.display()),
        "orders",
        "orders-Passw0rd",
        &b,
        &[],
    );
    let bundle = dir.path().join("bundle.yaml");
    let original = format!(
        "{CONFIG}{}{}",
        std::fs::read_to_string(&a).unwrap(),
        std::fs::read_to_string(&b).unwrap()
    );
    std::fs::write(&bundle, &original).unwrap();

    let dry = bin()
        .args(["reencrypt", "--dry-run", "-f"])
        .arg(&bundle)
        .arg("--to-local-key-file")
        .arg(&k2)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&dry.get_output().stdout).to_string();
    assert_eq!(stdout.matches("would re-encrypt").count(), 2, "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&bundle).unwrap(),
        original,
        "dry run wrote"
    );

    let out = bin()
        .args(["reencrypt", "-f"])
        .arg(&bundle)
        .arg("--local-key-file")
        .arg(&k1)
        .arg("--to-local-key-file")
        .arg(&k2)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert_eq!(
        stdout.matches("re-encrypted from sha256:").count(),
        2,
        "{stdout}"
    );
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(text.starts_with(&format!("{CONFIG}---\n")), "{text}");
    let docs: Vec<&str> = text.split("\n---\n").skip(1).collect();
    assert_eq!(docs.len(), 2);
    for (doc, password) in docs.iter().zip(["billing-Passw0rd", "orders-Passw0rd"]) {
        let resource = from_yaml(doc).unwrap();
        assert_eq!(password_of(&resource, &local(&k2)).await.unwrap(), password);
        assert!(
            password_of(&resource, &local(&k1)).await.is_err(),
            "key 1 opens it"
        );
        assert!(!doc.contains(password));
    }
    // Key 1's ciphertexts are gone from the file.
    for old in [&a, &b] {
        let old = from_yaml(&std::fs::read_to_string(old).unwrap()).unwrap();
        let sealed = old.spec.sealed_secret.unwrap();
        assert!(!text.contains(&sealed.ciphertext) && !text.contains(&sealed.encrypted_data_key));
    }

    // Again: nothing to do, and -w leaves the input alone.
    let copy = dir.path().join("copy.yaml");
    let again = bin()
        .args(["reencrypt", "orders", "-f"])
        .arg(&bundle)
        .arg("-w")
        .arg(&copy)
        .arg("--to-local-key-file")
        .arg(&k2)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&again.get_output().stdout).to_string();
    assert_eq!(
        stdout.trim(),
        format!(
            "{}: shop/orders: already sealed with the target key",
            bundle.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), text);
}

#[test]
fn refused_invocations_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = keygen(dir.path(), "one.key");
    let file = dir.path().join("a.yaml");
    seal(
        &format!("local:{}", k1.display()),
        "billing",
        "billing-Passw0rd",
        &file,
        &[],
    );
    let k2 = keygen(dir.path(), "two.key");
    for (args, expected) in [
        (
            vec!["reencrypt", "--to-local-key-file", k2.to_str().unwrap()],
            "name the credential, or give --all",
        ),
        (
            vec!["reencrypt", "-f", file.to_str().unwrap()],
            "--to-kms-key <ARN>",
        ),
        (
            vec![
                "reencrypt",
                "-f",
                file.to_str().unwrap(),
                "--to-kms-key",
                "not a key",
            ],
            "--to-kms-key: \"not a key\" is not an AWS KMS key ARN",
        ),
        (
            vec![
                "reencrypt",
                "-f",
                file.to_str().unwrap(),
                "--to-local-key-file",
                k2.to_str().unwrap(),
            ],
            "sealed with the local provider: give --local-key-file",
        ),
    ] {
        let out = bin().args(&args).assert().failure();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

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
async fn moto_two_keys_files_end_to_end() {
    let env = peers_env();
    let (key1, key2) = (create_key(&env).await, create_key(&env).await);
    let endpoint = env.get("PEERS_KMS_ENDPOINT").to_string();
    let aws = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("billing.yaml");
    seal(
        &format!("aws:{key1}"),
        "billing",
        "kms-Passw0rd",
        &file,
        &aws,
    );
    let before = std::fs::read_to_string(&file).unwrap();
    let old = from_yaml(&before).unwrap().spec.sealed_secret.unwrap();

    let out = bin()
        .envs(aws)
        .args(["reencrypt", "-f"])
        .arg(&file)
        .args(["--to-kms-key", &key2])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains(&format!("from {key1} to {key2}")),
        "{stdout}"
    );
    let after_text = std::fs::read_to_string(&file).unwrap();
    let after = from_yaml(&after_text).unwrap();
    let sealed = after.spec.sealed_secret.as_ref().unwrap();
    assert_eq!(sealed.kms.key_id, key2);
    assert!(!after_text.contains(&old.encrypted_data_key) && !after_text.contains(&old.ciphertext));

    // Opened through moto: key 2's data key, the same password.
    for (k, v) in aws {
        // SAFETY: set before any other thread of this test reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let providers = KmsProviders {
        aws: Some(AwsKms::from_env(AwsKmsOptions::default()).await),
        ..KmsProviders::default()
    };
    assert_eq!(
        password_of(&after, &providers).await.unwrap(),
        "kms-Passw0rd"
    );
    // The new data key does not unwrap as key 1's: pointing the envelope at key 1 fails.
    let mut forged = after.clone();
    forged.spec.sealed_secret.as_mut().unwrap().kms.key_id = key1.clone();
    assert!(password_of(&forged, &providers).await.is_err());

    // `verify` agrees, and a second run has nothing to do.
    bin()
        .envs(aws)
        .args(["verify", "-f"])
        .arg(&file)
        .assert()
        .success();
    let again = bin()
        .envs(aws)
        .args(["reencrypt", "-f"])
        .arg(&file)
        .args(["--to-kms-key", &key2])
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&again.get_output().stdout).contains("already sealed"));
}

/// A document without metadata.namespace (kustomize sets it) takes -n and keeps its shape.
#[tokio::test]
async fn a_document_without_namespace_takes_dash_n_and_stays_without() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (keygen(dir.path(), "one.key"), keygen(dir.path(), "two.key"));
    let file = dir.path().join("a.yaml");
    seal(
        &format!("local:{}", k1.display()),
        "billing",
        "billing-Passw0rd",
        &file,
        &[],
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("  namespace: shop\n"), "{text}");
    std::fs::write(&file, text.replace("  namespace: shop\n", "")).unwrap();
    let args = |extra: &[&str]| {
        let mut c = bin();
        c.args(["reencrypt", "-f"])
            .arg(&file)
            .arg("--local-key-file")
            .arg(&k1)
            .arg("--to-local-key-file")
            .arg(&k2)
            .args(extra);
        c
    };
    let out = args(&[]).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("give -n NAMESPACE"), "{stderr}");
    args(&["-n", "shop"]).assert().success();
    let after = std::fs::read_to_string(&file).unwrap();
    assert!(!after.contains("namespace:"), "{after}");
    let mut resource = from_yaml(&after).unwrap();
    resource.metadata.namespace = Some("shop".into());
    assert_eq!(
        password_of(&resource, &local(&k2)).await.unwrap(),
        "billing-Passw0rd"
    );
}
