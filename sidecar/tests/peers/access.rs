//! A removed service account is refused before the credential's TTL runs out.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use mailcred_core::crd::TlsMode;
use mailcred_core::testkit::TestCredential;

use crate::support::*;

/// One SMTP exchange up to MAIL FROM: the reply to MAIL.
fn smtp_mail_reply(port: u16, sender: &str) -> String {
    use std::io::Write;
    let app = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    app.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reader = BufReader::new(app.try_clone().unwrap());
    let mut writer = app;
    let reply = |reader: &mut BufReader<std::net::TcpStream>| loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.as_bytes().get(3) != Some(&b'-') {
            return line;
        }
    };
    assert!(reply(&mut reader).starts_with("220"));
    writer.write_all(b"EHLO app.local\r\n").unwrap();
    assert!(reply(&mut reader).starts_with("250"));
    writer
        .write_all(format!("MAIL FROM:<{sender}>\r\n").as_bytes())
        .unwrap();
    let mail = reply(&mut reader);
    writer.write_all(b"QUIT\r\n").unwrap();
    mail
}

/// One IMAP LOGIN as the application: the tagged reply.
fn imap_login_reply(port: u16) -> String {
    use std::io::Write;
    let app = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    app.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reader = BufReader::new(app.try_clone().unwrap());
    let mut writer = app;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("* OK"), "{line}");
    writer.write_all(b"a1 LOGIN app any\r\n").unwrap();
    let tagged = loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "connection closed before the LOGIN reply");
        if line.starts_with("a1 ") {
            break line.clone();
        }
    };
    writer.write_all(b"a2 LOGOUT\r\n").unwrap();
    tagged
}

/// Polls (bounded) until `attempt` gives a reply starting with `refused`; every reply before
/// it must start with `served`.
fn until_refused(attempt: impl Fn() -> String, served: &str, refused: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = attempt();
        if reply.starts_with(refused) {
            return reply;
        }
        assert!(reply.starts_with(served), "{reply}");
        assert!(
            Instant::now() < deadline,
            "still served after the access list changed: {reply}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn removed_service_account_is_refused_before_the_ttl() {
    let s = Setup::new();
    let user = s.e("PEERS_USER").to_string();
    let pw = s.e("PEERS_PASSWORD").to_string();
    let mut resource = TestCredential::new("ns", "mail")
        .smtp_endpoint(s.endpoint(false))
        .imap(
            s.e("PEERS_HOST"),
            s.env.port("PEERS_IMAP_TLS_PORT"),
            TlsMode::Implicit,
        )
        .ca_pem(&s.ca())
        .username(&user)
        .service_accounts(&["app", "batch"])
        .sealed(&s.kms, &pw)
        .await;
    let file = s.write("c.yaml", &resource);
    // TTL 900 s (the default): only the access check can refuse within this test.
    let sidecar = Sidecar::start(&s, &file, &["--service-account", "app"]);
    assert!(smtp_mail_reply(sidecar.port, &user).starts_with("250"));
    let login = imap_login_reply(sidecar.imap);
    assert!(login.starts_with("a1 OK"), "{login}\n{}", sidecar.logs());

    // The same sealed secret; only the access list changes.
    resource.spec.access.service_accounts = vec!["batch".into()];
    s.write("c.yaml", &resource);
    let mail = until_refused(|| smtp_mail_reply(sidecar.port, &user), "250", "454");
    assert!(mail.contains("service_account_not_allowed"), "{mail}");
    let login = until_refused(|| imap_login_reply(sidecar.imap), "a1 OK", "a1 NO");
    assert!(
        login.contains("[UNAVAILABLE]") && login.contains("service_account_not_allowed"),
        "{login}"
    );
    let logs = sidecar.logs();
    assert!(
        logs.contains("spec.access.serviceAccounts") && logs.contains("ServiceAccount app"),
        "the refusal names the access list:\n{logs}"
    );
    let metrics = reqwest_metrics(sidecar.admin);
    assert!(
        metrics.contains("mailcred_credential_cache_drops_total{reason=\"access_revoked\"} 1"),
        "the cached password was dropped at once:\n{metrics}"
    );
    assert_no_password(&s, &sidecar, &pw);
}
