//! `kubectl-mailcred request` as a user runs it: a pending MailCredential whose stored digest
//! matches the printed link's token; bad flags refused before any token exists; `-w` over a
//! sealed credential only with `--replace` (which keeps the secret); `--apply` through kubectl.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use mailcred_core::credential::from_yaml;
use mailcred_core::link_token::token_matches;

fn plugin() -> Command {
    Command::cargo_bin("kubectl-mailcred").expect("binary built")
}

fn rsa_key(dir: &Path) -> PathBuf {
    let key = dir.join("owner.key");
    plugin()
        .args(["keygen", "--rsa", "-o"])
        .arg(&key)
        .assert()
        .success();
    key.with_extension("pub")
}

fn request_args(public: &Path) -> Vec<String> {
    [
        "request",
        "--name",
        "billing",
        "--namespace",
        "shop",
        "--username",
        "billing@example.test",
        "--smtp",
        "smtp.example.test:587",
        "--service-account",
        "app",
        "--requested-by",
        "alice@platform",
        "--url",
        "https://keys.example.test",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--kms".into(), format!("local:{}", public.display())])
    .collect()
}

#[test]
fn writes_a_pending_credential_and_prints_its_link() {
    let dir = tempfile::tempdir().unwrap();
    let public = rsa_key(dir.path());
    let file = dir.path().join("billing.yaml");
    let out = plugin()
        .args(request_args(&public))
        .args(["--expires", "15m", "-w"])
        .arg(&file)
        .assert()
        .success();
    let link = String::from_utf8_lossy(&out.get_output().stdout)
        .trim()
        .to_owned();
    let token = link
        .strip_prefix("https://keys.example.test/#shop/billing/")
        .unwrap_or_else(|| panic!("{link}"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(token), "the token itself is stored");
    let resource = from_yaml(&text).unwrap();
    assert!(resource.spec.sealed_secret.is_none());
    let request = resource.spec.seal_request.unwrap();
    assert!(token_matches(token, &request.token_sha256));
    assert_eq!(request.requested_by, "alice@platform");
    assert!(!request.replace);
    assert_eq!(request.kms.wrapping.as_str(), "RSAES_OAEP_SHA_256");
}

#[test]
fn bad_flags_are_refused_before_any_link() {
    let dir = tempfile::tempdir().unwrap();
    let public = rsa_key(dir.path());
    let sym = dir.path().join("sym.key");
    plugin().args(["keygen", "-o"]).arg(&sym).assert().success();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--expires".into(), "2h".into()], "between 1m and 60m"),
        (vec!["--expires".into(), "soon".into()], "--expires"),
        (
            vec!["--url".into(), "http://keys.example.test".into()],
            "must be https://",
        ),
        (vec!["--password-stdin".into()], "takes no password"),
        (
            vec![
                "--kms".into(),
                "aws:arn:aws:kms:eu-west-1:111122223333:key/k".into(),
            ],
            "asymmetric",
        ),
        (
            vec!["--kms".into(), format!("local:{}", sym.display())],
            "keygen --rsa",
        ),
        (
            vec!["--smtp".into(), "smtp.example.test:0".into()],
            "--smtp",
        ),
    ];
    for (extra, expected) in cases {
        // A flag the base arguments already carry is replaced, others are added.
        let mut args = request_args(&public);
        match args.iter().position(|a| *a == extra[0]) {
            Some(i) if extra.len() == 2 => args[i + 1] = extra[1].clone(),
            _ => args.extend(extra.iter().cloned()),
        }
        let out = plugin().args(&args).assert().failure();
        let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(
            !stdout.contains('#') && !stderr.contains("/#shop/"),
            "{extra:?}: a link was printed"
        );
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
}

#[test]
fn a_sealed_file_is_replaced_only_with_replace_and_keeps_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let public = rsa_key(dir.path());
    let file = dir.path().join("billing.yaml");
    plugin()
        .args([
            "seal",
            "--name",
            "billing",
            "--namespace",
            "shop",
            "--username",
            "billing@example.test",
            "--smtp",
            "smtp.example.test:587",
            "--service-account",
            "app",
            "--password-stdin",
            "--kms",
        ])
        .arg(format!("local:{}", dir.path().join("owner.key").display()))
        .arg("-w")
        .arg(&file)
        .write_stdin("old-password\n")
        .assert()
        .success();
    let before = from_yaml(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let out = plugin()
        .args(request_args(&public))
        .arg("-w")
        .arg(&file)
        .assert()
        .failure();
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("--replace"));
    plugin()
        .args(request_args(&public))
        .args(["--replace", "-w"])
        .arg(&file)
        .assert()
        .success();
    let after = from_yaml(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(after.spec.sealed_secret, before.spec.sealed_secret);
    assert!(after.spec.seal_request.unwrap().replace);
}

#[test]
fn apply_creates_through_kubectl_and_patches_with_replace() {
    let dir = tempfile::tempdir().unwrap();
    let public = rsa_key(dir.path());
    let fake = dir.path().join("kubectl");
    let log = dir.path().join("calls");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" >> {0}\ncat >> {0}\necho >> {0}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = plugin()
        .env("KUBECTL", &fake)
        .args(request_args(&public))
        .arg("--apply")
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("/#shop/billing/"));
    plugin()
        .env("KUBECTL", &fake)
        .args(request_args(&public))
        .args(["--apply", "--replace"])
        .assert()
        .success();
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.starts_with("create -f -\n"), "{calls}");
    assert!(
        calls.contains("patch mailcredential billing -n shop --type merge"),
        "{calls}"
    );
    assert!(calls.contains("\"sealRequest\""), "{calls}");
    // The merge patch never mentions sealedSecret, so the stored one stays.
    assert!(!calls.contains("sealedSecret"), "{calls}");
}
