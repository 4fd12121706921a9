//! `verify_login` (the registration API's and `kubectl mailcred verify --login`'s check)
//! against the real postfix submission service (dovecot SASL; e2e/peers/start.sh).

use std::time::Duration;

use mailcred_core::crd::{TlsMode, UpstreamEndpoint};
use mailcred_core::login_check::LoginCheckError;
use mailcred_core::testkit::{PeersEnv, peers_env};
use mailcred_core::{MailPassword, UpstreamAuth};
use mailcred_smtp::verify_login;

const TIMEOUT: Duration = Duration::from_secs(10);

fn endpoint(env: &PeersEnv, port_key: &str, tls: TlsMode, ca: bool) -> UpstreamEndpoint {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut e = mailcred_core::testkit::endpoint(env.get("PEERS_HOST"), env.port(port_key), tls);
    e.ca_pem = ca.then(|| env.ca_pem());
    e
}

fn password(p: &str) -> UpstreamAuth {
    UpstreamAuth::Password(MailPassword::new(p.to_owned()).unwrap())
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run with --include-ignored"]
async fn the_right_password_passes_on_starttls_and_implicit_tls() {
    let env = peers_env();
    let auth = password(env.get("PEERS_PASSWORD"));
    for (port, tls) in [
        ("PEERS_SMTP_STARTTLS_PORT", TlsMode::Starttls),
        ("PEERS_SMTP_TLS_PORT", TlsMode::Implicit),
    ] {
        let e = endpoint(&env, port, tls, true);
        verify_login(&e, env.get("PEERS_USER"), &auth, TIMEOUT)
            .await
            .unwrap_or_else(|err| panic!("{port}: {err}"));
    }
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run with --include-ignored"]
async fn a_wrong_password_is_rejected_with_postfixs_reason_without_the_password() {
    let env = peers_env();
    let wrong = format!("wrong-{}", env.get("PEERS_PASSWORD"));
    let e = endpoint(&env, "PEERS_SMTP_STARTTLS_PORT", TlsMode::Starttls, true);
    let err = verify_login(&e, env.get("PEERS_USER"), &password(&wrong), TIMEOUT)
        .await
        .unwrap_err();
    let LoginCheckError::Rejected { reason } = &err else {
        panic!("expected Rejected, got {err:?}");
    };
    // postfix: "535 5.7.8 Error: authentication failed: ..." (dovecot SASL's verdict).
    assert!(reason.starts_with("535"), "{reason}");
    assert!(reason.contains("authentication failed"), "{reason}");
    assert!(!reason.contains(&wrong) && !format!("{err:?}").contains(&wrong));
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run with --include-ignored"]
async fn an_unverified_certificate_and_a_closed_port_are_not_rejections() {
    let env = peers_env();
    let auth = password(env.get("PEERS_PASSWORD"));
    // No caPem: the system roots do not know the peers' test CA.
    let e = endpoint(&env, "PEERS_SMTP_TLS_PORT", TlsMode::Implicit, false);
    let err = verify_login(&e, env.get("PEERS_USER"), &auth, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, LoginCheckError::Tls { .. }), "{err:?}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut e = endpoint(&env, "PEERS_SMTP_TLS_PORT", TlsMode::Implicit, true);
    e.port = port;
    let err = verify_login(&e, env.get("PEERS_USER"), &auth, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LoginCheckError::Unreachable { .. }),
        "{err:?}"
    );
}
