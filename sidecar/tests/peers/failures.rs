//! Upstream rejections passed on, upstream trouble as a temporary failure with a reason.

use std::path::{Path, PathBuf};

use mailcred_core::crd::SmtpPolicy;
use mailcred_core::kms::LocalKms;

use crate::support::*;

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn upstream_permanent_rejection_is_passed_on() {
    let s = Setup::new();
    let user = s.e("PEERS_USER").to_string();
    let pw = s.e("PEERS_PASSWORD").to_string();
    let file = s
        .credential_file(
            "c.yaml",
            s.endpoint(false),
            &user,
            &pw,
            SmtpPolicy::default(),
        )
        .await;
    let sidecar = Sidecar::start(&s, &file, &[]);
    let unknown = s.e("PEERS_UNKNOWN_RCPT").to_string();
    let r = send_smtplib(
        &sidecar,
        s.dir.path(),
        &user,
        &[&unknown],
        &message(&user, &unknown, &token("unknown"), 10),
    );
    assert_eq!(r.code, 550, "{r:?}");
    assert!(
        r.msg.contains("5.1.1") && r.msg.contains("upstream refused"),
        "{r:?}"
    );
    assert_eq!(sidecar.audits()[0]["outcome"], "upstream_rejected");
}

async fn temporary_failure(
    s: &Setup,
    file: &Path,
    extra: &[&str],
    code: u16,
    needle: &str,
) -> Sidecar {
    let user = s.e("PEERS_USER").to_string();
    let sidecar = Sidecar::start(s, file, extra);
    let sub = token("tempfail");
    let r = send_smtplib(
        &sidecar,
        s.dir.path(),
        &user,
        &[&user],
        &message(&user, &user, &sub, 10),
    );
    assert_eq!(r.code, code, "{r:?}\n{}", sidecar.logs());
    assert!(r.msg.contains(needle), "{r:?}");
    let log = std::fs::read_to_string(s.e("PEERS_POSTFIX_LOG")).unwrap();
    assert!(!log.contains(sub.as_str()), "nothing accepted upstream");
    sidecar
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn upstream_trouble_is_a_temporary_failure_with_a_reason() {
    let s = Setup::new();
    let user = s.e("PEERS_USER").to_string();
    let pw = s.e("PEERS_PASSWORD").to_string();

    // Upstream down: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut down = s.endpoint(false);
    down.port = closed;
    let f = s
        .credential_file("down.yaml", down, &user, &pw, SmtpPolicy::default())
        .await;
    let c = temporary_failure(&s, &f, &[], 451, "4.4.1").await;
    assert_eq!(c.audits()[0]["reason"], "upstream_unavailable");

    // Certificate not verifiable: no caPem, so the system roots, which do not know the test
    // CA; both TLS modes (implicit TLS and STARTTLS take different paths to the handshake).
    for implicit in [true, false] {
        let mut no_ca = s.endpoint(implicit);
        no_ca.ca_pem = None;
        let f = s
            .credential_file(
                &format!("noca-{implicit}.yaml"),
                no_ca,
                &user,
                &pw,
                SmtpPolicy::default(),
            )
            .await;
        let c = temporary_failure(&s, &f, &[], 454, "4.7.5").await;
        assert_eq!(c.audits()[0]["reason"], "upstream_tls");
    }

    // Wrong password sealed: upstream AUTH fails.
    let f = s
        .credential_file(
            "wrongpw.yaml",
            s.endpoint(false),
            &user,
            "not-the-password",
            SmtpPolicy::default(),
        )
        .await;
    let c = temporary_failure(&s, &f, &[], 454, "authentication failed").await;
    assert!(!c.logs().contains("not-the-password"));

    // KMS failure: the sidecar has another local key than the one sealed with.
    let f = s
        .credential_file(
            "kms.yaml",
            s.endpoint(false),
            &user,
            &pw,
            SmtpPolicy::default(),
        )
        .await;
    let other = s.dir.path().join("other.key");
    LocalKms::generate()
        .unwrap()
        .write_new_key_file(&other)
        .unwrap();
    let other = other.to_str().unwrap().to_string();
    let wrong = Setup {
        key_file: PathBuf::from(&other),
        env: s.env.clone(),
        dir: tempfile::tempdir().unwrap(),
        kms: LocalKms::generate().unwrap(),
    };
    let c = temporary_failure(&wrong, &f, &[], 454, "kms_wrong_key").await;
    assert_no_password(&s, &c, &pw);
}
