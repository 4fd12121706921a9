//! Against the real oidc-provider and the Google-style JWT-bearer endpoint of the test peers
//! (e2e/peers, notes in e2e/peers/README.md): client credentials with client_secret_post and
//! private_key_jwt, refresh with and without rotation, invalid_client, invalid_grant after
//! revocation, the service-account grant. Run with `cargo test -- --include-ignored` and
//! MAILCRED_PEERS_ENV.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use mailcred_core::crd::{ClientAuthMethod, OAuthGrantKind};
use mailcred_core::testkit::{OAuthPeers, PeersEnv, peers_env};
use mailcred_core::upstream_auth::{AccessTokenSource, GrantSecret};
use mailcred_core::{Error, TokenError};
use mailcred_oauth::{OAuthClient, TokenSource};
use secrecy::SecretString;

fn peers() -> (PeersEnv, OAuthPeers) {
    let env = peers_env();
    let oauth = env.oauth();
    (env, oauth)
}

fn secret(s: &str) -> Option<SecretString> {
    Some(SecretString::from(s.to_string()))
}

/// Runs a mailcred_e2e.oauth function with the secret on stdin (not in argv); prints JSON.
fn python(env: &PeersEnv, code: &str, stdin: &str) -> serde_json::Value {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import json, sys\nfrom mailcred_e2e import oauth, peers\np = peers.read_env({:?})\nsecret = sys.stdin.read()\n{code}",
            env.get("PEERS_DIR").to_string() + "/env"
        ))
        .env("PYTHONPATH", format!("{root}/e2e/lib"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python helper failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A refresh token of `client` for `user`, from the device flow with the scripted user.
fn refresh_token(env: &PeersEnv, client: &str, user: &str) -> String {
    let reply = python(
        env,
        &format!("print(json.dumps(oauth.device_token(p, {user:?}, {client:?})))"),
        "",
    );
    reply["refresh_token"].as_str().unwrap().to_string()
}

fn spec_for(
    o: &OAuthPeers,
    env: &PeersEnv,
    client_id: &str,
    grant: OAuthGrantKind,
    auth: ClientAuthMethod,
) -> mailcred_core::crd::OAuthSpec {
    let mut spec = support::spec(
        &o.token_endpoint,
        Some(&env.ca_pem()),
        client_id,
        grant,
        auth,
    );
    spec.scopes = vec![o.scope.clone()];
    spec
}

fn refused(r: Result<mailcred_core::upstream_auth::AccessToken, Error>) -> String {
    match r {
        Err(Error::Token(TokenError::Refused { code, .. })) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs the test peers (MAILCRED_PEERS_ENV)"]
async fn client_credentials_with_client_secret_post() {
    let (env, o) = peers();
    let spec = spec_for(
        &o,
        &env,
        &o.client_id,
        OAuthGrantKind::ClientCredentials,
        ClientAuthMethod::ClientSecretPost,
    );
    let c = OAuthClient::default();
    let before = o.token_requests(&[("client_id", o.client_id.as_str())]);
    let s = c
        .source(
            &spec,
            "app@example.test",
            support::client_secret(&o.client_secret),
        )
        .unwrap();
    let t = s.access_token().await.unwrap();
    assert_eq!(t.generation, 1);
    assert_eq!(s.access_token().await.unwrap().generation, 1, "cached");
    let left = t.expires_at - std::time::Instant::now();
    assert!(
        left <= o.access_token_ttl && left + std::time::Duration::from_secs(5) > o.access_token_ttl
    );
    assert_eq!(
        o.token_requests(&[("client_id", o.client_id.as_str())]),
        before + 1
    );
    assert_eq!(c.metrics.count("ok"), 1);
}

#[tokio::test]
#[ignore = "needs the test peers (MAILCRED_PEERS_ENV)"]
async fn client_credentials_with_private_key_jwt() {
    let (env, o) = peers();
    let mut spec = spec_for(
        &o,
        &env,
        &o.jwt_client_id,
        OAuthGrantKind::ClientCredentials,
        ClientAuthMethod::PrivateKeyJwt,
    );
    spec.key_id = Some(o.jwt_key_id.clone());
    let pem = std::fs::read_to_string(&o.jwt_key_pem).unwrap();
    let grant = GrantSecret {
        private_key_pem: secret(&pem),
        ..Default::default()
    };
    let s = OAuthClient::default()
        .source(&spec, "app@example.test", grant)
        .unwrap();
    let t = s.access_token().await.unwrap();
    assert!(!t.expose().is_empty());
    // A fresh assertion (new jti) for the next token: the server refuses a replayed one.
    s.rejected(&t);
    assert_eq!(s.access_token().await.unwrap().generation, 2);
}

#[tokio::test]
#[ignore = "needs the test peers (MAILCRED_PEERS_ENV)"]
async fn wrong_client_secret_is_invalid_client() {
    let (env, o) = peers();
    let spec = spec_for(
        &o,
        &env,
        &o.client_id,
        OAuthGrantKind::ClientCredentials,
        ClientAuthMethod::ClientSecretPost,
    );
    let s = OAuthClient::default()
        .source(&spec, "u", support::client_secret("wrong-secret"))
        .unwrap();
    let r = s.access_token().await;
    if let Err(e) = &r {
        assert!(!format!("{e} {e:?}").contains("wrong-secret"));
    }
    assert_eq!(refused(r), "invalid_client");
}

fn refresh_source(o: &OAuthPeers, env: &PeersEnv, client_id: &str, rt: &str) -> TokenSource {
    let spec = spec_for(
        o,
        env,
        client_id,
        OAuthGrantKind::RefreshToken,
        ClientAuthMethod::ClientSecretPost,
    );
    let grant = GrantSecret {
        refresh_token: secret(rt),
        client_secret: secret(&o.client_secret),
        ..Default::default()
    };
    OAuthClient::default()
        .source(&spec, "app@example.test", grant)
        .unwrap()
}

#[tokio::test]
#[ignore = "needs the test peers (MAILCRED_PEERS_ENV)"]
async fn refresh_without_rotation_survives_replicas_and_invalid_grant_after_revocation() {
    let (env, o) = peers();
    let rt = refresh_token(&env, "secret", "app@example.test");
    let a = refresh_source(&o, &env, &o.client_id, &rt);
    let b = refresh_source(&o, &env, &o.client_id, &rt);
    let t = a.access_token().await.unwrap();
    a.rejected(&t);
    assert_eq!(a.access_token().await.unwrap().generation, 2);
    // A second replica with the same sealed refresh token: fine without rotation.
    assert_eq!(b.access_token().await.unwrap().generation, 1);
    // Revoked at the server: the next refresh is invalid_grant.
    python(
        &env,
        "print(json.dumps(oauth.revoke(p, secret, 'secret', 'refresh_token') or {}))",
        &rt,
    );
    let c = refresh_source(&o, &env, &o.client_id, &rt);
    assert_eq!(refused(c.access_token().await), "invalid_grant");
}

#[tokio::test]
#[ignore = "needs the test peers (MAILCRED_PEERS_ENV)"]
async fn rotated_refresh_tokens_are_kept_and_replicas_sharing_one_kill_the_grant() {
    let (env, o) = peers();
    let rt = refresh_token(&env, "rotate", "app@example.test");
    let a = refresh_source(&o, &env, &o.rotate_client_id, &rt);
    let t1 = a.access_token().await.unwrap();
    a.rejected(&t1);
    // The second refresh uses the rotated token kept in memory: it works.
    let t2 = a.access_token().await.unwrap();
    assert_eq!(t2.generation, 2);
    // A replica (or this pod after a restart / the secret-cache TTL) presents the sealed,
    // rotated-out token: oidc-provider refuses it AND revokes the whole grant.
    let b = refresh_source(&o, &env, &o.rotate_client_id, &rt);
    assert_eq!(refused(b.access_token().await), "invalid_grant");
    a.rejected(&t2);
    assert_eq!(refused(a.access_token().await), "invalid_grant");
}

#[tokio::test]
#[ignore = "needs the test peers (MAILCRED_PEERS_ENV)"]
async fn google_service_account_grant() {
    let (env, o) = peers();
    let key: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&o.google_sa_key_file).unwrap()).unwrap();
    let mut spec = support::spec(
        &o.google_token_endpoint,
        Some(&env.ca_pem()),
        key["client_email"].as_str().unwrap(),
        OAuthGrantKind::ServiceAccount,
        ClientAuthMethod::PrivateKeyJwt,
    );
    spec.scopes = vec![o.google_scope.clone()];
    spec.key_id = key["private_key_id"].as_str().map(str::to_owned);
    let grant = GrantSecret {
        private_key_pem: secret(key["private_key"].as_str().unwrap()),
        ..Default::default()
    };
    let c = OAuthClient::default();
    let s = c.source(&spec, "app@example.test", grant).unwrap();
    let t = s.access_token().await.unwrap();
    assert!(!t.expose().is_empty());
    // An unknown mailbox as subject is refused with Google's code.
    spec.subject = Some("nobody@example.test".into());
    let grant = GrantSecret {
        private_key_pem: secret(key["private_key"].as_str().unwrap()),
        ..Default::default()
    };
    let s = c.source(&spec, "app@example.test", grant).unwrap();
    let code = refused(s.access_token().await);
    assert!(!code.is_empty());
}

/// `a AUTHENTICATE XOAUTH2` at the peers' dovecot (implicit TLS) with `token`: the tagged
/// reply line.
async fn imap_xoauth2(
    env: &PeersEnv,
    user: &str,
    token: &mailcred_core::upstream_auth::AccessToken,
) -> String {
    use base64::Engine;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let port = env.port("PEERS_IMAP_TLS_PORT");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let config = mailcred_core::tls::client_config(Some(&env.ca_pem())).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(mailcred_core::tls::server_name("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut io = BufReader::new(tls);
    let mut line = String::new();
    io.read_line(&mut line).await.unwrap();
    let ir = mailcred_core::upstream_auth::SaslMechanism::Xoauth2.initial_response(
        user,
        "localhost",
        port,
        token,
    );
    let cmd = format!(
        "a AUTHENTICATE XOAUTH2 {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(ir.as_bytes())
    );
    io.write_all(cmd.as_bytes()).await.unwrap();
    loop {
        line.clear();
        io.read_line(&mut line).await.unwrap();
        if line.starts_with("a ") || line.is_empty() {
            return line;
        }
        if line.starts_with('+') {
            io.write_all(b"\r\n").await.unwrap();
        }
    }
}

#[tokio::test]
#[ignore = "needs the test peers (MAILCRED_PEERS_ENV)"]
async fn issued_tokens_log_in_at_dovecot_and_rejected_ones_are_replaced() {
    let (env, o) = peers();
    let spec = spec_for(
        &o,
        &env,
        &o.client_id,
        OAuthGrantKind::ClientCredentials,
        ClientAuthMethod::ClientSecretPost,
    );
    let s = OAuthClient::default()
        .source(
            &spec,
            "app@example.test",
            support::client_secret(&o.client_secret),
        )
        .unwrap();
    let t = s.access_token().await.unwrap();
    let reply = imap_xoauth2(&env, "app@example.test", &t).await;
    assert!(reply.starts_with("a OK"), "{reply}");
    // Revoked at the server: dovecot refuses it; after rejected() the next token works.
    python(
        &env,
        "print(json.dumps(oauth.revoke(p, secret, 'secret', 'access_token') or {}))",
        t.expose(),
    );
    let reply = imap_xoauth2(&env, "app@example.test", &t).await;
    assert!(reply.starts_with("a NO"), "{reply}");
    s.rejected(&t);
    let t2 = s.access_token().await.unwrap();
    assert_eq!(t2.generation, 2);
    let reply = imap_xoauth2(&env, "app@example.test", &t2).await;
    assert!(reply.starts_with("a OK"), "{reply}");
}
