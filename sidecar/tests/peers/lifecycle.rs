//! Rotation picked up from the credential file (the rotate user's password is changed at dovecot
//! and given back), and SIGTERM finishing the message in flight.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mailcred_core::crd::SmtpPolicy;

use crate::support::*;

/// e2e/peers/set-password.sh of this repository (or MAILCRED_PEERS_SCRIPTS), password on stdin.
fn set_password(s: &Setup, user: &str, password: &str) {
    use std::io::Write;
    let scripts = std::env::var("MAILCRED_PEERS_SCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/peers"));
    let mut child = Command::new(scripts.join("set-password.sh"))
        .args([s.e("PEERS_DIR"), user])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("set-password.sh in {}: {e}", scripts.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn rotation_is_picked_up_from_the_credential_file() {
    let s = Setup::new();
    let user = s.e("PEERS_ROTATE_USER").to_string();
    // Start from a password of our own: the env file's may have been rotated by an earlier run.
    let old = format!("initial-{}", token("pw"));
    set_password(&s, &user, &old);
    let file = s
        .credential_file(
            "c.yaml",
            s.endpoint(false),
            &user,
            &old,
            SmtpPolicy::default(),
        )
        .await;
    let mut sidecar = Sidecar::start(&s, &file, &[]);
    let first = token("before-rotation");
    assert_eq!(
        send_smtplib(
            &sidecar,
            s.dir.path(),
            &user,
            &[&user],
            &message(&user, &user, &first, 10)
        )
        .code,
        250
    );
    // New password upstream and re-sealed into the file.
    let new = format!("rotated-{}", token("pw"));
    set_password(&s, &user, &new);
    s.credential_file(
        "c.yaml",
        s.endpoint(false),
        &user,
        &new,
        SmtpPolicy::default(),
    )
    .await;
    sidecar.wait_log("credential file changed; reloaded");
    let second = token("after-rotation");
    let r = send_smtplib(
        &sidecar,
        s.dir.path(),
        &user,
        &[&user],
        &message(&user, &user, &second, 10),
    );
    assert_eq!(r.code, 250, "{r:?}\n{}", sidecar.logs());
    assert_delivered(&s, &user, &new, &first);
    assert_delivered(&s, &user, &new, &second);
    let builds = reqwest_metrics(sidecar.admin);
    assert!(
        builds.contains("mailcred_smtp_upstream_pools_built_total 2"),
        "{builds}"
    );
    assert!(
        builds.contains("mailcred_kms_decrypts_total{result=\"ok\"} 2"),
        "{builds}"
    );
    assert_no_password(&s, &sidecar, &old);
    assert_no_password(&s, &sidecar, &new);
    // Back to the env file's password: later tests (imap-proxy's, the e2e suites) log in with it.
    set_password(&s, &user, s.e("PEERS_ROTATE_PASSWORD"));
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn sigterm_finishes_the_message_in_flight() {
    use std::io::{Read, Write};
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
    let mut sidecar = Sidecar::start(&s, &file, &[]);
    let mut app = std::net::TcpStream::connect(("127.0.0.1", sidecar.port)).unwrap();
    app.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reader = BufReader::new(app.try_clone().unwrap());
    let mut line = String::new();
    let mut expect = |reader: &mut BufReader<std::net::TcpStream>, code: &str| loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with(code), "expected {code}, got {line:?}");
        if line.as_bytes().get(3) == Some(&b' ') {
            break;
        }
    };
    expect(&mut reader, "220");
    let subject = token("sigterm");
    app.write_all(
        format!("EHLO app.local\r\nMAIL FROM:<{user}>\r\nRCPT TO:<{user}>\r\nDATA\r\n").as_bytes(),
    )
    .unwrap();
    expect(&mut reader, "250");
    expect(&mut reader, "250");
    expect(&mut reader, "250");
    expect(&mut reader, "354");
    app.write_all(b"From: <").unwrap();
    // SIGTERM while the message is half sent.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(sidecar.child.id() as i32, libc::SIGTERM) },
        0
    );
    sidecar.wait_log("stopped accepting");
    let rest = String::from_utf8(message(&user, &user, &subject, 10)).unwrap();
    app.write_all(rest.trim_start_matches("From: <").as_bytes())
        .unwrap();
    app.write_all(b".\r\n").unwrap();
    expect(&mut reader, "250");
    app.write_all(b"QUIT\r\n").unwrap();
    let mut tail = String::new();
    let _ = reader.read_to_string(&mut tail);
    let status = sidecar.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", sidecar.port)).is_err(),
        "no longer accepting"
    );
    assert_delivered(&s, &user, &pw, &subject);
}
