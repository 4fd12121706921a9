//! The sidecar binary's refusals that need no peers.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailcred-sidecar"))
        .args([
            "--no-aws",
            "--admin-listen",
            "127.0.0.1:0",
            "--credential-file",
            "/nonexistent/mailcred.yaml",
        ])
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), output_text(&out))
}

/// stdout and stderr of a finished run, as text.
fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn non_loopback_listener_is_refused() {
    let (ok, text) = run(&["--smtp-listen", "0.0.0.0:0"]);
    assert!(!ok);
    assert!(
        text.contains("not a loopback address") && text.contains("--unsafe-listen-any"),
        "{text}"
    );
}

#[test]
fn unsafe_listen_any_is_logged_loudly() {
    // It then stops on the missing credential file, after having said so.
    let (ok, text) = run(&["--smtp-listen", "0.0.0.0:0", "--unsafe-listen-any"]);
    assert!(!ok);
    assert!(
        text.contains("\"level\":\"ERROR\"") && text.contains("UNSAFE"),
        "{text}"
    );
    assert!(text.contains("/nonexistent/mailcred.yaml"), "{text}");
}

/// The sidecar with the AWS provider on and the cloud metadata endpoint pointed at `metadata`
/// (the region lookup of the AWS SDK asks it when no region is configured).
fn with_metadata_endpoint(metadata: &std::net::TcpListener) -> Command {
    let port = metadata.local_addr().unwrap().port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailcred-sidecar"));
    cmd.env_remove("AWS_EC2_METADATA_DISABLED")
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("POD_NAMESPACE")
        .env_remove("MAILCRED_CREDENTIALS")
        .env_remove("MAILCRED_NO_AWS")
        .env_remove("MAILCRED_SERVICE_ACCOUNT")
        .env_remove("MAILCRED_ACCOUNT_SET")
        .env_remove("MAILCRED_APP_TOKEN_FILE")
        .args([
            "--smtp-listen",
            "127.0.0.1:0",
            "--imap-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]);
    cmd
}

/// Connections the listener has queued (accepted by the kernel), without waiting.
fn connections(listener: &std::net::TcpListener) -> usize {
    listener.set_nonblocking(true).unwrap();
    std::iter::from_fn(|| listener.accept().ok()).count()
}

#[test]
fn argument_errors_are_reported_before_any_cloud_sdk_starts() {
    let metadata = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "--account-set",
                "CRM",
                "--namespace",
                "ns",
                "--service-account",
                "app",
            ],
            "not a valid name",
        ),
        (
            &[
                "--account-set",
                "crm",
                "--namespace",
                "ns",
                "--write-app-token",
                "/nonexistent/t",
            ],
            "needs the pod's ServiceAccount",
        ),
        (
            &[
                "--account-set",
                "crm",
                "--namespace",
                "ns",
                "--service-account",
                "app",
            ],
            "needs the app's local token",
        ),
        (&[], "no credential given"),
        (&["--credential", "mail"], "namespace is unknown"),
        (
            &[
                "--credential",
                "mail",
                "--namespace",
                "ns",
                "--smtp-token-file",
                "/nonexistent/token",
            ],
            "SMTP token file /nonexistent/token",
        ),
        (
            &["--credential", "mail", "--cache-ttl-seconds", "soon"],
            "invalid value",
        ),
    ];
    for (args, expected) in cases {
        let out = with_metadata_endpoint(&metadata)
            .args(args)
            .output()
            .unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(expected), "{args:?}: {text}");
    }
    assert_eq!(
        connections(&metadata),
        0,
        "the metadata endpoint was asked before the arguments were checked"
    );
}

/// The control of the test above: with valid arguments the same setup does reach the
/// metadata endpoint (so a silent listener there means something).
#[test]
fn valid_arguments_do_reach_the_metadata_endpoint() {
    let metadata = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mail.yaml");
    let resource = mailcred_core::testkit::TestCredential::new("ns", "mail").build();
    mailcred_core::testkit::write_manifest(&resource, &file).unwrap();
    let mut child = with_metadata_endpoint(&metadata)
        .arg("--credential-file")
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    metadata.set_nonblocking(false).unwrap();
    // Blocks until the SDK connects; a sidecar that exits first fails the test below.
    let (tx, rx) = std::sync::mpsc::channel();
    let listener = metadata.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = tx.send(listener.accept().is_ok());
    });
    let connected = rx.recv_timeout(std::time::Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        connected,
        Ok(true),
        "the AWS SDK never asked the metadata endpoint"
    );
}
