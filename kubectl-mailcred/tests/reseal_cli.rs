//! `seal -f`: a new password with every other field kept, flags applied over the file, the
//! OAuth path, and `--merge-into` keeping the rest of a multi-document file byte for byte.
//! Each result is opened with the key to prove what was sealed.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use mailcred_core::crd::MailCredential;
use mailcred_core::credential::from_yaml;
use mailcred_core::kms::{KmsProviders, LocalKms};
use mailcred_core::{CredentialBinding, envelope};
use secrecy::ExposeSecret;

fn bin() -> Command {
    let mut c = Command::cargo_bin("kubectl-mailcred").unwrap();
    c.env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

fn keygen(dir: &Path) -> PathBuf {
    let key = dir.join("local.key");
    bin().args(["keygen", "-o"]).arg(&key).assert().success();
    key
}

/// A billing credential with policy flags set, sealed with `password`.
fn first_seal(dir: &Path, key: &Path, password: &str) -> PathBuf {
    let file = dir.join("billing.yaml");
    bin()
        .args(["seal", "--name", "billing", "--namespace", "shop"])
        .args(["--username", "app@example.test"])
        .args([
            "--smtp",
            "smtp.example.test:587",
            "--imap",
            "imap.example.test:993",
        ])
        .args([
            "--service-account",
            "billing-api",
            "--service-account",
            "reports",
        ])
        .args([
            "--allowed-sender",
            "*@example.test",
            "--messages-per-minute",
            "5",
        ])
        .args([
            "--allowed-mailbox",
            "INBOX",
            "--allowed-mailbox",
            "Archive/*",
        ])
        .arg(format!("--kms=local:{}", key.display()))
        .args(["--password-stdin", "-w"])
        .arg(&file)
        .write_stdin(format!("{password}\n"))
        .assert()
        .success();
    file
}

fn read(path: &Path) -> MailCredential {
    from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn password_of(resource: &MailCredential, key: &Path) -> String {
    let providers = KmsProviders {
        local: Some(LocalKms::from_file(key).unwrap()),
        ..KmsProviders::default()
    };
    let binding = CredentialBinding::for_resource(resource).unwrap();
    let sealed = resource.spec.sealed_secret.as_ref().unwrap();
    envelope::open(&providers, &binding, sealed)
        .await
        .unwrap()
        .expose()
        .to_string()
}

#[tokio::test]
async fn reseal_keeps_every_field_and_seals_the_new_password() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path());
    let file = first_seal(dir.path(), &key, "first-Passw0rd");
    let before = read(&file);
    let out = dir.path().join("resealed.yaml");
    bin()
        .args(["seal", "-f"])
        .arg(&file)
        .arg(format!("--kms=local:{}", key.display()))
        .args(["--password-stdin", "-w"])
        .arg(&out)
        .write_stdin("second-Passw0rd\n")
        .assert()
        .success();
    let after = read(&out);
    assert_eq!(after.metadata.name, before.metadata.name);
    assert_eq!(after.metadata.namespace, before.metadata.namespace);
    let (mut a, mut b) = (after.spec.clone(), before.spec.clone());
    assert_ne!(a.sealed_secret, b.sealed_secret);
    a.sealed_secret = None;
    b.sealed_secret = None;
    assert_eq!(a, b, "every field but the sealed secret is kept");
    assert_eq!(password_of(&after, &key).await, "second-Passw0rd");
    assert!(
        !std::fs::read_to_string(&out)
            .unwrap()
            .contains("second-Passw0rd")
    );
}

#[tokio::test]
async fn flags_are_applied_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path());
    let file = first_seal(dir.path(), &key, "first-Passw0rd");
    let before = read(&file);
    let out = bin()
        .args(["seal", "-f"])
        .arg(&file)
        .arg(format!("--kms=local:{}", key.display()))
        .args([
            "--smtp",
            "smtp2.example.test:465",
            "--messages-per-hour",
            "30",
        ])
        .args(["--service-account", "billing-v2"])
        .arg("--password-stdin")
        .write_stdin("second-Passw0rd")
        .assert()
        .success();
    let after = from_yaml(&String::from_utf8_lossy(&out.get_output().stdout)).unwrap();
    let smtp = after.spec.smtp.as_ref().unwrap();
    assert_eq!((smtp.host.as_str(), smtp.port), ("smtp2.example.test", 465));
    assert_eq!(smtp.tls, mailcred_core::crd::TlsMode::Implicit);
    let rates = &after.spec.policy.smtp.rate_limits;
    assert_eq!(
        (rates.messages_per_minute, rates.messages_per_hour),
        (Some(5), Some(30))
    );
    assert_eq!(after.spec.access.service_accounts, ["billing-v2"]);
    assert_eq!(after.spec.imap, before.spec.imap, "IMAP kept");
    assert_eq!(after.spec.policy.imap, before.spec.policy.imap);
    assert_eq!(
        after.spec.policy.smtp.allowed_senders,
        before.spec.policy.smtp.allowed_senders
    );
    // The new endpoint is bound: the secret opens for the resource as printed.
    assert_eq!(password_of(&after, &key).await, "second-Passw0rd");
}

#[tokio::test]
async fn oauth_credentials_are_resealed_with_their_grant_kept() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path());
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, "first-client-secret\n").unwrap();
    let file = dir.path().join("oauth.yaml");
    bin()
        .args(["seal", "--name", "graph", "--namespace", "shop"])
        .args([
            "--username",
            "app@contoso.example",
            "--smtp",
            "smtp.office365.com:587",
        ])
        .args(["--service-account", "mailer"])
        .args([
            "--oauth-provider",
            "microsoft",
            "--tenant",
            "contoso.onmicrosoft.com",
        ])
        .args(["--client-id", "app-id", "--grant", "clientCredentials"])
        .arg("--client-secret-file")
        .arg(&secret)
        .arg(format!("--kms=local:{}", key.display()))
        .arg("-w")
        .arg(&file)
        .assert()
        .success();
    std::fs::write(&secret, "second-client-secret\n").unwrap();
    let out = bin()
        .args(["seal", "-f"])
        .arg(&file)
        .arg(format!("--kms=local:{}", key.display()))
        .arg("--client-secret-file")
        .arg(&secret)
        .assert()
        .success();
    let after = from_yaml(&String::from_utf8_lossy(&out.get_output().stdout)).unwrap();
    assert_eq!(after.spec.oauth, read(&file).spec.oauth);
    let providers = KmsProviders {
        local: Some(LocalKms::from_file(&key).unwrap()),
        ..KmsProviders::default()
    };
    let binding = CredentialBinding::for_resource(&after).unwrap();
    let grant = envelope::open_grant(
        &providers,
        &binding,
        after.spec.sealed_secret.as_ref().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        grant.client_secret.unwrap().expose_secret(),
        "second-client-secret"
    );
    // A password for an OAuth credential is refused before anything is read.
    let refused = bin()
        .args(["seal", "-f"])
        .arg(&file)
        .arg(format!("--kms=local:{}", key.display()))
        .arg("--password-stdin")
        .write_stdin("nope\n")
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).to_string();
    assert!(
        stderr.contains("it is an OAuth credential (spec.oauth)"),
        "{stderr}"
    );
}

const HEAD: &str = "# shop manifests\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"   # odd spacing kept\n";
const TAIL: &str = "--- # orders\napiVersion: mailcred.io/v1alpha1\nkind: MailCredential\nmetadata:\n  name: orders\n  namespace: shop\nspec: {}\n";

#[tokio::test]
async fn merge_into_replaces_the_same_credential_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path());
    let file = first_seal(dir.path(), &key, "first-Passw0rd");
    let old_doc = std::fs::read_to_string(&file).unwrap();
    let manifests = dir.path().join("manifests.yaml");
    std::fs::write(&manifests, format!("{HEAD}{old_doc}{TAIL}")).unwrap();
    bin()
        .args(["seal", "-f"])
        .arg(&file)
        .arg(format!("--kms=local:{}", key.display()))
        .arg("--password-stdin")
        .arg("--merge-into")
        .arg(&manifests)
        .write_stdin("second-Passw0rd\n")
        .assert()
        .success()
        .stdout("");
    let merged = std::fs::read_to_string(&manifests).unwrap();
    assert!(merged.starts_with(&format!("{HEAD}---\n")), "{merged}");
    assert!(merged.ends_with(TAIL), "{merged}");
    let middle = &merged[HEAD.len() + 4..merged.len() - TAIL.len()];
    let resource = from_yaml(middle).unwrap();
    assert_eq!(password_of(&resource, &key).await, "second-Passw0rd");
    assert_eq!(merged.matches("name: billing").count(), 1);

    // A file without it: appended after a separator, the rest untouched.
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, HEAD.trim_end()).unwrap();
    bin()
        .args(["seal", "-f"])
        .arg(&file)
        .arg(format!("--kms=local:{}", key.display()))
        .arg("--password-stdin")
        .arg("--merge-into")
        .arg(&other)
        .write_stdin("third-Passw0rd\n")
        .assert()
        .success();
    let appended = std::fs::read_to_string(&other).unwrap();
    assert!(
        appended.starts_with(&format!("{}\n---\n", HEAD.trim_end())),
        "{appended}"
    );
    let resource = from_yaml(&appended[HEAD.trim_end().len() + 5..]).unwrap();
    assert_eq!(password_of(&resource, &key).await, "third-Passw0rd");
}
