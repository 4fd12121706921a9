//! Both flows end to end against the real oidc-provider of the test peers: a scripted person
//! (e2e/lib/mailcred_e2e/oauth.py) signs in on its page; the sealed result opens, holds a
//! refresh token that appeared in no output, and the sidecar's token client (mailcred-oauth)
//! gets an access token with it. Also: the person denies; nobody signs in before --timeout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mailcred_core::credential::from_yaml;
use mailcred_core::kms::{KmsProviders, LocalKms};
use mailcred_core::testkit::{OAuthPeers, PeersEnv, peers_env};
use mailcred_core::upstream_auth::AccessTokenSource;
use mailcred_core::{CredentialBinding, envelope};
use secrecy::ExposeSecret;

use crate::support::{Running, http_get, local_key, query_param};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `python -m mailcred_e2e.oauth ARGS` (the scripted person); returns its JSON output.
fn person(args: &[&str]) -> serde_json::Value {
    let out = Command::new(repo().join(".venv/bin/python"))
        .args(["-m", "mailcred_e2e.oauth"])
        .args(args)
        .env("PYTHONPATH", repo().join("e2e/lib"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn start(
    env: &PeersEnv,
    o: &OAuthPeers,
    dir: &Path,
    flow: &str,
    timeout: &str,
) -> (Running, PathBuf, PathBuf) {
    let key = local_key(dir);
    let out = dir.join("credential.yaml");
    let mut args: Vec<String> = [
        "authorize",
        "--flow",
        flow,
        "--name",
        "billing",
        "--namespace",
        "shop",
        "--username",
        env.get("PEERS_USER"),
        "--smtp",
        "localhost:587",
        "--service-account",
        "billing-api",
        "--kms",
        &format!("local:{}", key.display()),
        "--oauth-provider",
        "generic",
        "--client-id",
        &o.native_client_id,
        "--token-endpoint",
        &o.token_endpoint,
        "--scope",
        &o.scope,
        "--scope",
        "offline_access",
        "--oauth-ca-file",
        env.get("PEERS_CA_PEM"),
        "--timeout",
        timeout,
        "-w",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let endpoint = if flow == "device" {
        ["--device-endpoint".to_string(), o.device_endpoint.clone()]
    } else {
        [
            "--authorization-endpoint".to_string(),
            o.authorization_endpoint.clone(),
        ]
    };
    args.extend(endpoint);
    (Running::start(&args), key, out)
}

fn user_code(run: &mut Running) -> String {
    run.wait_line(Duration::from_secs(30), |l| {
        l.strip_prefix("To sign in, open ")
            .and_then(|r| r.split(" and enter the code ").nth(1))
            .map(str::to_string)
    })
}

/// The sealed result opens for its resource, holds a refresh token that no output showed,
/// and that token gets an access token from oidc-provider through mailcred-oauth.
async fn sealed_grant_works(key: &Path, out: &Path, printed: &[&str], o: &OAuthPeers) {
    let resource = from_yaml(&std::fs::read_to_string(out).unwrap()).unwrap();
    let oauth = resource.spec.oauth.clone().unwrap();
    assert_eq!(oauth.grant.as_str(), "refreshToken");
    assert_eq!(oauth.client_id, o.native_client_id);
    let providers = KmsProviders {
        local: Some(LocalKms::from_file(key).unwrap()),
        ..KmsProviders::default()
    };
    let binding = CredentialBinding::for_resource(&resource).unwrap();
    let sealed = resource.spec.sealed_secret.as_ref().unwrap();
    let secret = envelope::open_grant(&providers, &binding, sealed)
        .await
        .unwrap();
    let refresh = secret
        .refresh_token
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_string();
    assert!(refresh.len() >= 16);
    for text in printed {
        assert!(!text.contains(&refresh), "the refresh token was printed");
    }
    assert!(!std::fs::read_to_string(out).unwrap().contains(&refresh));
    let before = o.token_requests(&[
        ("client_id", &o.native_client_id),
        ("grant_type", "refresh_token"),
        ("outcome", "ok"),
    ]);
    let source = mailcred_oauth::OAuthClient::default()
        .source(&oauth, &resource.spec.username, secret)
        .unwrap();
    let token = source.access_token().await.unwrap();
    assert!(!token.expose().is_empty());
    let after = o.token_requests(&[
        ("client_id", &o.native_client_id),
        ("grant_type", "refresh_token"),
        ("outcome", "ok"),
    ]);
    assert_eq!(
        after,
        before + 1,
        "one refresh_token grant at oidc-provider"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real peers: e2e/peers/start.sh DIR, MAILCRED_PEERS_ENV=DIR/env"]
async fn device_flow_seals_a_refresh_token_that_gets_access_tokens() {
    let env = peers_env();
    let o = env.oauth();
    let dir = tempfile::tempdir().unwrap();
    let (mut run, key, out) = start(&env, &o, dir.path(), "device", "120s");
    let code = user_code(&mut run);
    person(&["approve-device", &code, env.get("PEERS_USER")]);
    let (ok, stdout, stderr) = run.finish(Duration::from_secs(60));
    assert!(ok, "{stderr}");
    assert!(stdout.is_empty(), "-w writes the file; stdout {stdout:?}");
    assert!(stderr.contains("refresh token is sealed"), "{stderr}");
    sealed_grant_works(&key, &out, &[&stdout, &stderr], &o).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the real peers: e2e/peers/start.sh DIR, MAILCRED_PEERS_ENV=DIR/env"]
async fn code_flow_with_pkce_seals_a_refresh_token_that_gets_access_tokens() {
    let env = peers_env();
    let o = env.oauth();
    let dir = tempfile::tempdir().unwrap();
    let (mut run, key, out) = start(&env, &o, dir.path(), "code", "120s");
    let issuer_auth = o.authorization_endpoint.clone();
    let url = run.wait_line(Duration::from_secs(30), |l| {
        l.starts_with(&format!("{issuer_auth}?"))
            .then(|| l.to_string())
    });
    let back = person(&["authorize", &url, env.get("PEERS_USER")]);
    let back = back["redirect"].as_str().unwrap().to_string();
    assert!(query_param(&back, "code").is_some(), "{back}");
    assert_eq!(http_get(&back), 200);
    let (ok, stdout, stderr) = run.finish(Duration::from_secs(60));
    assert!(ok, "{stderr}");
    assert!(!stderr.contains(&back), "the code was printed");
    sealed_grant_works(&key, &out, &[&stdout, &stderr], &o).await;
}

#[test]
#[ignore = "needs the real peers: e2e/peers/start.sh DIR, MAILCRED_PEERS_ENV=DIR/env"]
fn device_flow_denied_by_the_person_is_a_clear_error_and_seals_nothing() {
    let env = peers_env();
    let o = env.oauth();
    let dir = tempfile::tempdir().unwrap();
    let (mut run, _key, out) = start(&env, &o, dir.path(), "device", "120s");
    let code = user_code(&mut run);
    person(&["deny-device", &code]);
    let (ok, stdout, stderr) = run.finish(Duration::from_secs(60));
    assert!(!ok && stdout.is_empty(), "{stderr}");
    assert!(
        stderr.contains("the sign-in was denied (access_denied)"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
#[ignore = "needs the real peers: e2e/peers/start.sh DIR, MAILCRED_PEERS_ENV=DIR/env"]
fn device_flow_without_a_sign_in_ends_at_the_timeout() {
    let env = peers_env();
    let o = env.oauth();
    let dir = tempfile::tempdir().unwrap();
    let (mut run, _key, out) = start(&env, &o, dir.path(), "device", "3s");
    user_code(&mut run);
    let started = Instant::now();
    let (ok, stdout, stderr) = run.finish(Duration::from_secs(30));
    assert!(!ok && stdout.is_empty(), "{stderr}");
    assert!(stderr.contains("no sign-in within 3 s"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(!out.exists());
}
