//! Issue #12 end to end: the proxy logs in to the real dovecot with AUTHENTICATE XOAUTH2 /
//! OAUTHBEARER and tokens from the real oidc-provider (dovecot introspects each one). A token
//! the provider never issued is refused by dovecot: replaced once, then `NO [UNAVAILABLE]`.
//! A 2 s token outliving its session: the session goes on or ends with a BYE, never hangs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mailcred_core::AccessTokenSource;
use mailcred_core::UpstreamAuth;
use mailcred_core::crd::{Policy, TlsMode};
use mailcred_core::credential::UsableCredential;
use mailcred_core::testkit::{PeerTokens, StaticSource, StubTokens};
use mailcred_core::upstream_auth::{OAuthLogin, SaslMechanism};
use mailcred_imap::ImapProxyConfig;

async fn proxy(mechanism: SaslMechanism, tokens: Arc<dyn AccessTokenSource>) -> RunningProxy {
    let env = peers_env();
    let ca = std::fs::read_to_string(&env["PEERS_CA_PEM"]).unwrap();
    let credential = Arc::new(UsableCredential {
        oauth: None,
        namespace: NS.into(),
        name: NAME.into(),
        username: env["PEERS_USER"].clone(),
        smtp: None,
        imap: Some(endpoint(
            &env["PEERS_HOST"],
            env["PEERS_IMAP_TLS_PORT"].parse().unwrap(),
            TlsMode::Implicit,
            Some(ca),
        )),
        policy: Policy {
            imap: policy(true, &["INBOX"]),
            ..Default::default()
        },
        sealed_fingerprint: "sha256:peers".into(),
        auth: UpstreamAuth::OAuth(OAuthLogin { mechanism, tokens }),
    });
    start_proxy(
        ImapProxyConfig::default(),
        Arc::new(StaticSource::shared(credential)),
    )
    .await
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run with --include-ignored"]
async fn oauth_login_select_fetch_and_a_refused_token() {
    let user = peers_env()["PEERS_USER"].clone();
    for mechanism in [SaslMechanism::Xoauth2, SaslMechanism::Oauthbearer] {
        let tokens = Arc::new(PeerTokens::new(&user, "secret"));
        let proxy = proxy(mechanism, tokens.clone()).await;
        let mut c = Client::connect(proxy.addr).await;
        let login = c.cmd("a1", "LOGIN app x").await;
        assert!(
            last(&login).starts_with("a1 OK"),
            "{mechanism:?}: {login:?}"
        );
        let select = c.cmd("a2", "SELECT INBOX").await;
        assert!(last(&select).starts_with("a2 OK"), "{select:?}");
        let fetch = c.cmd("a3", "UID FETCH 1:* (FLAGS)").await;
        assert!(last(&fetch).starts_with("a3 OK"), "{fetch:?}");
        assert_eq!(tokens.fetches(), 1);
        c.cmd("a4", "LOGOUT").await;
        proxy.stop().await;
    }

    let tokens = Arc::new(StubTokens::new("not-issued"));
    let proxy = proxy(SaslMechanism::Xoauth2, tokens.clone()).await;
    let mut c = Client::connect(proxy.addr).await;
    let login = c.cmd("a1", "LOGIN app x").await;
    assert!(last(&login).starts_with("a1 NO [UNAVAILABLE]"), "{login:?}");
    assert_eq!((tokens.fetches(), tokens.rejections()), (2, 2));
    let app = String::from_utf8_lossy(&c.transcript).into_owned();
    assert!(!app.contains("not-issued"), "{app}");
    proxy.stop().await;
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run with --include-ignored"]
async fn a_token_that_expires_mid_session_never_hangs_it() {
    let user = peers_env()["PEERS_USER"].clone();
    let tokens = Arc::new(PeerTokens::new(&user, "short"));
    let proxy = proxy(SaslMechanism::Xoauth2, tokens).await;
    let mut c = Client::connect(proxy.addr).await;
    assert!(last(&c.cmd("a1", "LOGIN app x").await).starts_with("a1 OK"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // dovecot checks the token at login only: the session goes on. Were it to end it, the
    // application would get a BYE and the close; either way within the bound.
    let answer = tokio::time::timeout(Duration::from_secs(15), c.cmd("a2", "SELECT INBOX")).await;
    let lines = answer.expect("the session hung after the token expired");
    let end = last(&lines);
    assert!(
        end.starts_with("a2 OK") || lines.iter().any(|l| l.starts_with("* BYE")),
        "{lines:?}"
    );
    proxy.stop().await;
}
