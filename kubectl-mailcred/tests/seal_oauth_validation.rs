//! `seal` with OAuth grants refuses every bad flag combination, naming the flag, before it
//! reads standard input or any secret file: each row's stdin is a pipe that is still unread
//! after the process exits.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

const PASSWORD: &str = "never-read-Passw0rd";

/// OAuth grants: every bad combination is refused, naming the flag, before stdin or any
/// secret file is read.
#[test]
fn bad_oauth_inputs_are_refused_before_any_secret_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("local.key");
    let status = Command::new(env!("CARGO_BIN_EXE_kubectl-mailcred"))
        .args(["keygen", "-o"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let secret_file = dir.path().join("client.secret");
    std::fs::write(&secret_file, "cs\n").unwrap();
    let secret_file = secret_file.to_str().unwrap().to_string();
    let kms = format!("local:{}", key.display());
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "seal",
            "--name",
            "billing",
            "--namespace",
            "shop",
            "--username",
            "app@example.test",
            "--smtp",
            "smtp.office365.com:587",
            "--service-account",
            "billing-api",
            "--kms",
            &kms,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let ms = [
        "--oauth-provider",
        "microsoft",
        "--tenant",
        "contoso.onmicrosoft.com",
        "--client-id",
        "app-id",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut e: Vec<&str> = ms.to_vec();
        e.extend_from_slice(extra);
        base(&e)
    };
    let rows: Vec<(Vec<String>, &str)> = vec![
        (
            base(&[
                "--oauth-provider",
                "yahoo",
                "--grant",
                "clientCredentials",
                "--client-id",
                "x",
            ]),
            "--oauth-provider \"yahoo\": expected one of microsoft, google, generic",
        ),
        (
            with(&["--grant", "implicit"]),
            "--grant \"implicit\": expected one of",
        ),
        (with(&[]), "--grant \"\": expected one of"),
        (
            with(&["--grant", "clientCredentials", "--client-auth", "mtls"]),
            "--client-auth \"mtls\"",
        ),
        (
            with(&["--grant", "clientCredentials", "--mechanism", "PLAIN"]),
            "--mechanism \"PLAIN\"",
        ),
        (
            base(&[
                "--oauth-provider",
                "microsoft",
                "--client-id",
                "x",
                "--grant",
                "clientCredentials",
                "--client-secret-stdin",
            ]),
            "tenant is required with provider microsoft",
        ),
        (
            base(&[
                "--oauth-provider",
                "microsoft",
                "--tenant",
                "t",
                "--grant",
                "clientCredentials",
                "--client-secret-stdin",
            ]),
            "--client-id is required",
        ),
        (
            with(&["--grant", "clientCredentials"]),
            "needs a client secret (--client-secret-stdin or --client-secret-file)",
        ),
        (
            with(&[
                "--grant",
                "clientCredentials",
                "--client-secret-stdin",
                "--password-stdin",
            ]),
            "--password-stdin and --oauth-provider exclude each other",
        ),
        (
            with(&[
                "--grant",
                "clientCredentials",
                "--client-secret-stdin",
                "--client-secret-file",
                &secret_file,
            ]),
            "give the client secret once",
        ),
        (
            with(&[
                "--grant",
                "clientCredentials",
                "--client-auth",
                "privateKeyJwt",
                "--client-secret-stdin",
            ]),
            "needs certificateThumbprint",
        ),
        (
            with(&[
                "--grant",
                "clientCredentials",
                "--client-auth",
                "privateKeyJwt",
                "--key-id",
                "k",
            ]),
            "needs a private key",
        ),
        (
            with(&[
                "--grant",
                "clientCredentials",
                "--client-auth",
                "none",
                "--client-secret-stdin",
            ]),
            "clientAuth none does not fit grant clientCredentials",
        ),
        (
            with(&[
                "--grant",
                "clientCredentials",
                "--mechanism",
                "OAUTHBEARER",
                "--client-secret-stdin",
            ]),
            "accepts only XOAUTH2",
        ),
        (
            with(&["--grant", "refreshToken", "--client-secret-stdin"]),
            "needs a refresh token",
        ),
        (
            with(&[
                "--grant",
                "refreshToken",
                "--refresh-token-stdin",
                "--client-auth",
                "clientSecretPost",
                "--client-secret-stdin",
            ]),
            "both read standard input",
        ),
        (
            with(&[
                "--grant",
                "serviceAccount",
                "--private-key-file",
                &secret_file,
            ]),
            "serviceAccount (JWT bearer with domain-wide delegation) is Google's",
        ),
        (
            with(&[
                "--grant",
                "clientCredentials",
                "--token-endpoint",
                "http://idp.test/token",
                "--client-secret-stdin",
            ]),
            "is http://",
        ),
        (
            with(&[
                "--grant",
                "clientCredentials",
                "--token-endpoint",
                "https://u:p@idp.test/token",
                "--client-secret-stdin",
            ]),
            "never in the URL",
        ),
        (
            with(&[
                "--grant",
                "clientCredentials",
                "--scope",
                "a b",
                "--client-secret-stdin",
            ]),
            "is not a scope token",
        ),
        (
            with(&[
                "--grant",
                "clientCredentials",
                "--client-secret-file",
                "missing.secret",
            ]),
            "missing.secret does not exist",
        ),
        (
            base(&[
                "--oauth-provider",
                "google",
                "--client-id",
                "1",
                "--grant",
                "serviceAccount",
                "--service-account-key-file",
                "nope.json",
            ]),
            "nope.json does not exist",
        ),
        (
            base(&[
                "--oauth-provider",
                "google",
                "--client-id",
                "1",
                "--grant",
                "refreshToken",
                "--refresh-token-stdin",
                "--service-account-key-file",
                &secret_file,
            ]),
            "--service-account-key-file is for --grant serviceAccount",
        ),
        (
            base(&[
                "--oauth-provider",
                "generic",
                "--client-id",
                "1",
                "--grant",
                "clientCredentials",
                "--client-secret-stdin",
            ]),
            "tokenEndpoint is required with provider generic",
        ),
    ];
    for (args, expected) in &rows {
        let (mut unread, mut writer) = std::io::pipe().unwrap();
        writer
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        drop(writer);
        let out = Command::new(env!("CARGO_BIN_EXE_kubectl-mailcred"))
            .args(args)
            .current_dir(dir.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::from(unread.try_clone().unwrap()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
        let mut left = String::new();
        unread.read_to_string(&mut left).unwrap();
        assert_eq!(left, format!("{PASSWORD}\n"), "{args:?} read stdin");
    }
}
