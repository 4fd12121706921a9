//! `verify --login` against the real postfix (submission, dovecot SASL) and dovecot (IMAP) of
//! the test peers: a sealed password that is right passes both, a wrong one fails with the
//! servers' reasons (without the password); a sealed OAuth client-credentials grant gets a
//! token from oidc-provider and logs in with XOAUTH2; a wrong client secret fails naming the
//! OAuth error.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use mailcred_core::testkit::{PeersEnv, peers_env};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubectl-mailcred"))
}

/// Seals a credential for the peers' SMTP (STARTTLS) and IMAP (TLS) into DIR/cred.yaml.
fn seal(env: &PeersEnv, dir: &Path, extra: &[&str], stdin: &str) -> std::path::PathBuf {
    let key = dir.join("local.key");
    if !key.exists() {
        assert!(
            bin()
                .args(["keygen", "-o"])
                .arg(&key)
                .status()
                .unwrap()
                .success()
        );
    }
    let out = dir.join("cred.yaml");
    let host = env.get("PEERS_HOST");
    let smtp = format!("{host}:{}", env.get("PEERS_SMTP_STARTTLS_PORT"));
    let imap = format!("{host}:{}", env.get("PEERS_IMAP_TLS_PORT"));
    let mut child = bin()
        .args([
            "seal",
            "--name",
            "billing",
            "--namespace",
            "shop",
            "--username",
        ])
        .arg(env.get("PEERS_USER"))
        .args([
            "--smtp",
            &smtp,
            "--smtp-tls",
            "starttls",
            "--imap",
            &imap,
            "--imap-tls",
            "implicit",
        ])
        .args([
            "--ca-file",
            env.get("PEERS_CA_PEM"),
            "--service-account",
            "app",
        ])
        .arg("--kms")
        .arg(format!("local:{}", key.display()))
        .args(extra)
        .arg("-w")
        .arg(&out)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    out
}

fn verify_login(dir: &Path, cred: &Path) -> (bool, String, String) {
    let out = bin()
        .args(["verify", "--login", "-f"])
        .arg(cred)
        .arg("--local-key-file")
        .arg(dir.join("local.key"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[ignore = "needs the real peers: e2e/peers/start.sh DIR, MAILCRED_PEERS_ENV=DIR/env"]
fn a_right_password_logs_in_to_both_upstreams() {
    let env = peers_env();
    let dir = tempfile::tempdir().unwrap();
    let password = format!("{}\n", env.get("PEERS_PASSWORD"));
    let cred = seal(&env, dir.path(), &["--password-stdin"], &password);
    let (ok, stdout, stderr) = verify_login(dir.path(), &cred);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok: smtp ") && stdout.contains("(password)"),
        "{stdout}"
    );
    assert!(stdout.contains("ok: imap "), "{stdout}");
}

#[test]
#[ignore = "needs the real peers: e2e/peers/start.sh DIR, MAILCRED_PEERS_ENV=DIR/env"]
fn a_wrong_password_fails_with_the_servers_reasons_and_no_password() {
    let env = peers_env();
    let dir = tempfile::tempdir().unwrap();
    let wrong = format!("wrong-{}", env.get("PEERS_PASSWORD"));
    let cred = seal(&env, dir.path(), &["--password-stdin"], &wrong);
    let (ok, stdout, stderr) = verify_login(dir.path(), &cred);
    assert!(!ok, "{stdout}");
    // postfix via dovecot SASL, and dovecot itself.
    assert!(
        stdout.contains("FAILED: smtp") && stdout.contains("535"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAILED: imap") && stdout.contains("AUTHENTICATIONFAILED"),
        "{stdout}"
    );
    assert!(stderr.contains("the login failed at smtp"), "{stderr}");
    assert!(!stdout.contains(&wrong) && !stderr.contains(&wrong));
}

fn client_credentials(env: &PeersEnv, dir: &Path, secret: &str) -> std::path::PathBuf {
    let o = env.oauth();
    let secret_file = dir.join("client.secret");
    std::fs::write(&secret_file, secret).unwrap();
    seal(
        env,
        dir,
        &[
            "--oauth-provider",
            "generic",
            "--grant",
            "clientCredentials",
            "--client-id",
            &o.client_id,
            "--token-endpoint",
            &o.token_endpoint,
            "--scope",
            &o.scope,
            "--oauth-ca-file",
            env.get("PEERS_CA_PEM"),
            "--client-secret-file",
            secret_file.to_str().unwrap(),
        ],
        "",
    )
}

#[test]
#[ignore = "needs the real peers: e2e/peers/start.sh DIR, MAILCRED_PEERS_ENV=DIR/env"]
fn an_oauth_client_credentials_grant_logs_in_with_xoauth2() {
    let env = peers_env();
    let o = env.oauth();
    let dir = tempfile::tempdir().unwrap();
    let cred = client_credentials(&env, dir.path(), &o.client_secret);
    let before = o.token_requests(&[("client_id", &o.client_id), ("outcome", "ok")]);
    let (ok, stdout, stderr) = verify_login(dir.path(), &cred);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok: smtp ") && stdout.contains("(xoauth2)"),
        "{stdout}"
    );
    assert!(stdout.contains("ok: imap "), "{stdout}");
    // One token for both logins: the check shares the sidecar's token cache.
    let after = o.token_requests(&[("client_id", &o.client_id), ("outcome", "ok")]);
    assert_eq!(after, before + 1);
    assert!(!stdout.contains(&o.client_secret) && !stderr.contains(&o.client_secret));
}

#[test]
#[ignore = "needs the real peers: e2e/peers/start.sh DIR, MAILCRED_PEERS_ENV=DIR/env"]
fn a_wrong_client_secret_fails_naming_the_oauth_error() {
    let env = peers_env();
    let dir = tempfile::tempdir().unwrap();
    let wrong = "wrong-client-secret-value";
    let cred = client_credentials(&env, dir.path(), wrong);
    let (ok, stdout, stderr) = verify_login(dir.path(), &cred);
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("invalid_client"), "{stdout}");
    assert!(!stdout.contains(wrong) && !stderr.contains(wrong));
}

/// A sealed refreshToken grant is not spent by `verify --login` (rotation would revoke it),
/// and no request is made: the token endpoint is a listener nothing may reach.
#[test]
fn verify_login_refuses_a_refresh_token_grant_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("local.key");
    assert!(
        bin()
            .args(["keygen", "-o"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let wire = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    wire.set_nonblocking(true).unwrap();
    let token = format!(
        "https://127.0.0.1:{}/token",
        wire.local_addr().unwrap().port()
    );
    let out = dir.path().join("cred.yaml");
    let mut child = bin()
        .args([
            "seal",
            "--name",
            "me",
            "--namespace",
            "home",
            "--username",
            "me@example.test",
        ])
        .args(["--smtp", "127.0.0.1:1", "--service-account", "app"])
        .arg("--kms")
        .arg(format!("local:{}", key.display()))
        .args([
            "--oauth-provider",
            "generic",
            "--grant",
            "refreshToken",
            "--client-id",
            "c",
        ])
        .args([
            "--token-endpoint",
            &token,
            "--scope",
            "mail",
            "--refresh-token-stdin",
            "-w",
        ])
        .arg(&out)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"rt-value\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let (ok, stdout, stderr) = verify_login(dir.path(), &out);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("does not use a sealed refreshToken grant"),
        "{stderr}"
    );
    assert!(matches!(wire.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
}
