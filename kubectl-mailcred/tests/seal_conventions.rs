//! kubectl conventions: `-o` picks the format, `-w` writes a file, `version`, `completion`,
//! and the namespace from the kubeconfig's current context.

use std::os::unix::fs::PermissionsExt;

use assert_cmd::Command;
use mailcred_core::crd::MailCredential;
use mailcred_core::credential::from_yaml;

const PASSWORD: &str = "conventions-Passw0rd";

fn plugin() -> Command {
    Command::cargo_bin("kubectl-mailcred").expect("binary built")
}

fn key(dir: &std::path::Path) -> std::path::PathBuf {
    let key = dir.join("local.key");
    plugin().args(["keygen", "-o"]).arg(&key).assert().success();
    key
}

fn seal(key: &std::path::Path) -> Command {
    let mut cmd = plugin();
    cmd.args([
        "seal",
        "--name",
        "billing",
        "--username",
        "app@example.test",
        "--smtp",
        "smtp.example.test:587",
        "--service-account",
        "billing-api",
        "--password-stdin",
    ])
    .arg(format!("--kms=local:{}", key.display()))
    .env_remove("KUBECONFIG")
    .env("HOME", key.parent().expect("key in a dir"));
    cmd
}

#[test]
fn dash_o_with_a_file_name_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path());
    let out = seal(&key)
        .current_dir(dir.path())
        .args(["-o", "mcred.yaml"])
        .write_stdin(PASSWORD)
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("-o now picks the format (yaml|json); write a file with -w FILE"),
        "{stderr}"
    );
    assert!(!dir.path().join("mcred.yaml").exists());
}

#[test]
fn dash_o_yaml_prints_and_creates_no_file_named_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path());
    let out = seal(&key)
        .current_dir(dir.path())
        .args(["-o", "yaml"])
        .write_stdin(PASSWORD)
        .assert()
        .success();
    let yaml = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(from_yaml(&yaml).is_ok(), "{yaml}");
    assert!(!dir.path().join("yaml").exists());
}

#[test]
fn dash_o_json_prints_the_resource_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path());
    let out = seal(&key)
        .args(["-o", "json", "--recipients-per-minute", "7"])
        .write_stdin(PASSWORD)
        .assert()
        .success();
    let json = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(!json.contains(PASSWORD));
    let resource: MailCredential = serde_json::from_str(&json).expect("JSON MailCredential");
    assert_eq!(
        resource.spec.policy.smtp.rate_limits.recipients_per_minute,
        Some(7)
    );
}

#[test]
fn dash_w_writes_a_0644_file_and_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path());
    let file = dir.path().join("mcred.yaml");
    let out = seal(&key)
        .arg("-w")
        .arg(&file)
        .write_stdin(PASSWORD)
        .assert()
        .success();
    assert!(out.get_output().stdout.is_empty());
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("kind: MailCredential") && !text.contains(PASSWORD));
}

#[test]
fn namespace_comes_from_the_kubeconfig_current_context() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path());
    let config = dir.path().join("kubeconfig");
    std::fs::write(
        &config,
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\ncontexts:\n- name: prod\n  context:\n    namespace: prod-ns\n- name: dev\n  context:\n    cluster: kind\n    namespace: shop-dev\n",
    )
    .unwrap();
    let list = format!("{}:/nonexistent/second", config.display());
    let out = seal(&key)
        .env("KUBECONFIG", list)
        .write_stdin(PASSWORD)
        .assert()
        .success();
    let yaml = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let resource = from_yaml(&yaml).unwrap();
    assert_eq!(resource.metadata.namespace.as_deref(), Some("shop-dev"));

    // --namespace wins; without any kubeconfig the namespace is `default`.
    let out = seal(&key)
        .env("KUBECONFIG", &config)
        .args(["-n", "explicit"])
        .write_stdin(PASSWORD)
        .assert()
        .success();
    let resource = from_yaml(&String::from_utf8_lossy(&out.get_output().stdout)).unwrap();
    assert_eq!(resource.metadata.namespace.as_deref(), Some("explicit"));
    let out = seal(&key).write_stdin(PASSWORD).assert().success();
    let resource = from_yaml(&String::from_utf8_lossy(&out.get_output().stdout)).unwrap();
    assert_eq!(resource.metadata.namespace.as_deref(), Some("default"));
}

#[test]
fn version_names_the_crate_and_envelope_format() {
    let out = plugin().arg("version").assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains(&format!("kubectl-mailcred {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert!(stdout.contains("envelope format: 1"), "{stdout}");
}

#[test]
fn completion_scripts_cover_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = plugin().args(["completion", shell]).assert().success();
        let script = String::from_utf8_lossy(&out.get_output().stdout).to_string();
        assert!(
            script.contains("seal") && script.contains("recipients-per-minute"),
            "{shell}"
        );
    }
    plugin().args(["completion", "tcsh"]).assert().failure();
}
