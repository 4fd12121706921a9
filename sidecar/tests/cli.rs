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
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
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
