//! Failure semantics at login without a working upstream: KMS down, upstream unreachable,
//! upstream not speaking TLS, IMAP disabled by policy, local token checks. Every one answers
//! the application's LOGIN with a tagged NO and a reason code, never a hang.

mod common;

use common::*;
use mailcred_core::MailPassword;
use mailcred_core::crd::{ImapPolicy, TlsMode};
use mailcred_imap::{ImapMetrics, ImapProxy, ImapProxyConfig};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn kms_failure_gives_no_unavailable() {
    let proxy = start_proxy(ImapProxyConfig::default(), std::sync::Arc::new(KmsDown)).await;
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a1", "LOGIN app anything").await;
    assert_eq!(
        last(&r),
        "a1 NO [UNAVAILABLE] Credential unavailable (kms_unreachable); try again later"
    );
    // The session goes on: the application may try again.
    let r = c.cmd("a2", "NOOP").await;
    assert_eq!(last(&r), "a2 OK NOOP completed");
    let text = proxy.metrics_text();
    assert!(
        text.contains("mailcred_imap_denials_total{reason=\"credential_unavailable\"} 1"),
        "{text}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn unreachable_upstream_gives_no_unavailable() {
    // Bind then drop: a port on loopback where nothing listens.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let source = SealedSource::new(
        Some(endpoint("127.0.0.1", port, TlsMode::Implicit, None)),
        "app@example.test",
        "s3cret-Pass",
        policy(true, &["INBOX"]),
    )
    .await;
    let proxy = start_proxy(ImapProxyConfig::default(), source.clone()).await;
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a1", "LOGIN app anything").await;
    assert_eq!(
        last(&r),
        "a1 NO [UNAVAILABLE] Upstream IMAP server unavailable (upstream_unreachable); try again later"
    );
    assert_eq!(
        *source.opened.lock().unwrap(),
        1,
        "the credential was opened for the login"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_without_tls_gives_no_unavailable() {
    // A server that answers in plaintext where TLS is expected (implicit TLS endpoint).
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = fake.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = fake.accept().await {
            let _ = s.write_all(b"* OK plaintext IMAP here\r\n").await;
        }
    });
    let source = SealedSource::new(
        Some(endpoint("localhost", port, TlsMode::Implicit, None)),
        "app@example.test",
        "s3cret-Pass",
        policy(true, &["INBOX"]),
    )
    .await;
    let proxy = start_proxy(ImapProxyConfig::default(), source).await;
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a1", "LOGIN app anything").await;
    assert_eq!(
        last(&r),
        "a1 NO [UNAVAILABLE] Upstream IMAP server unavailable (upstream_tls); try again later"
    );
    assert!(!String::from_utf8_lossy(&c.transcript).contains("s3cret-Pass"));
    proxy.stop().await;
}

#[tokio::test]
async fn imap_disabled_by_policy_refuses_login() {
    let source = SealedSource::new(
        Some(endpoint("127.0.0.1", 1, TlsMode::Implicit, None)),
        "app@example.test",
        "s3cret-Pass",
        ImapPolicy {
            enabled: false,
            ..policy(true, &["INBOX"])
        },
    )
    .await;
    let proxy = start_proxy(ImapProxyConfig::default(), source).await;
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a1", "LOGIN app anything").await;
    assert_eq!(
        last(&r),
        "a1 NO [NOPERM] IMAP is disabled for this credential"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn credential_without_imap_server_refuses_login() {
    let source = SealedSource::new(
        None,
        "app@example.test",
        "s3cret-Pass",
        policy(true, &["INBOX"]),
    )
    .await;
    let proxy = start_proxy(ImapProxyConfig::default(), source).await;
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a1", "LOGIN app anything").await;
    assert_eq!(
        last(&r),
        "a1 NO [UNAVAILABLE] This credential has no IMAP server"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn local_token_is_checked_for_login_and_authenticate_plain() {
    let source = SealedSource::new(
        Some(endpoint("127.0.0.1", 1, TlsMode::Implicit, None)),
        "app@example.test",
        "s3cret-Pass",
        policy(true, &["INBOX"]),
    )
    .await;
    let config = ImapProxyConfig {
        local_token: Some(MailPassword::new("local-token-1".into()).unwrap()),
        ..Default::default()
    };
    let proxy = start_proxy(config, source).await;
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a1", "LOGIN app wrong-token").await;
    assert_eq!(last(&r), "a1 NO [AUTHENTICATIONFAILED] Invalid credentials");
    // Right token: accepted locally, so the proxy goes upstream (which is down here).
    let r = c.cmd("a2", "LOGIN app local-token-1").await;
    assert!(
        last(&r).starts_with("a2 NO [UNAVAILABLE] Upstream"),
        "{r:?}"
    );
    // AUTHENTICATE PLAIN with the continuation request, wrong then right.
    use base64::Engine as _;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    c.send(b"a3 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await.unwrap(), "+ ");
    c.send(format!("{}\r\n", b64(b"\0app\0nope")).as_bytes())
        .await;
    assert_eq!(
        c.line().await.unwrap(),
        "a3 NO [AUTHENTICATIONFAILED] Invalid credentials"
    );
    let r = c
        .cmd(
            "a4",
            &format!("AUTHENTICATE PLAIN {}", b64(b"\0app\0local-token-1")),
        )
        .await;
    assert!(
        last(&r).starts_with("a4 NO [UNAVAILABLE] Upstream"),
        "{r:?}"
    );
    // The third failure closes the connection.
    let r = c.cmd("a5", "LOGIN app wrong-again").await;
    assert_eq!(r[0], "a5 NO [AUTHENTICATIONFAILED] Invalid credentials");
    assert_eq!(c.line().await.unwrap(), "* BYE Too many failed logins");
    assert!(c.closed().await);
    proxy.stop().await;
}

#[tokio::test]
async fn non_loopback_listener_is_refused() {
    let proxy = ImapProxy::new(
        ImapProxyConfig::default(),
        std::sync::Arc::new(KmsDown),
        ImapMetrics::unregistered(),
    );
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = proxy
        .serve(listener, mailcred_imap::CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("non-loopback"), "{err}");
}

#[tokio::test]
async fn connection_limit_answers_bye() {
    let config = ImapProxyConfig {
        max_connections: 1,
        ..Default::default()
    };
    let proxy = start_proxy(config, std::sync::Arc::new(KmsDown)).await;
    let _first = Client::connect(proxy.addr).await;
    let mut second = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(WAIT, second.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf, b"* BYE [UNAVAILABLE] Too many connections\r\n");
    proxy.stop().await;
}

#[tokio::test]
async fn no_login_in_time_gives_bye() {
    let config = ImapProxyConfig {
        login_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let proxy = start_proxy(config, std::sync::Arc::new(KmsDown)).await;
    let mut c = Client::connect(proxy.addr).await;
    assert_eq!(
        c.line().await.as_deref(),
        Some("* BYE Autologout; no login in time")
    );
    assert!(c.closed().await);
    proxy.stop().await;
}
