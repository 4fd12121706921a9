//! The binary's command line: the flags the Helm chart relies on exist with their defaults,
//! and a missing cluster configuration fails cleanly with a message, not a panic.

use std::process::Command;

fn operator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailcred-operator"))
}

#[test]
fn help_lists_the_chart_flags_with_defaults() {
    let out = operator().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "--namespace <NAMESPACE>",
        "[env: POD_NAMESPACE=",
        "--metrics-addr <METRICS_ADDR>",
        "[default: 0.0.0.0:8080]",
        "--leader-elect <LEADER_ELECT>",
        "--webhook-addr <WEBHOOK_ADDR>",
        "[default: 0.0.0.0:8443]",
        "--webhook-tls-mode <WEBHOOK_TLS_MODE>",
        "--invalid-pod-policy <INVALID_POD_POLICY>",
        "--sidecar-image <SIDECAR_IMAGE>",
        "--sidecar-mode <SIDECAR_MODE>",
        "[default: 127.0.0.1:2525]",
        "[default: 127.0.0.1:1143]",
        "[default: 127.0.0.1:15090]",
        "--sidecar-cache-ttl-seconds <SIDECAR_CACHE_TTL_SECONDS>",
        "--sidecar-trusted-kms-endpoint <URL>",
        "--sidecar-env <NAME=VALUE>",
    ] {
        assert!(
            help.contains(expected),
            "--help lacks {expected:?}:\n{help}"
        );
    }
}

#[test]
fn refuses_a_non_loopback_sidecar_address() {
    let out = operator()
        .args([
            "--sidecar-imap-addr",
            "0.0.0.0:1143",
            "--log-format",
            "text",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("--sidecar-imap-addr 0.0.0.0:1143 is not a loopback address"),
        "{text}"
    );
}

#[test]
fn without_any_cluster_configuration_it_exits_with_a_reason() {
    let home = tempfile::tempdir().unwrap();
    let out = operator()
        .env_clear()
        .env("HOME", home.path())
        .env("KUBECONFIG", home.path().join("missing-kubeconfig"))
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--webhook-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("loading the Kubernetes client configuration"),
        "{text}"
    );
    assert!(
        text.contains("\"level\":\"ERROR\""),
        "JSON logs by default: {text}"
    );
}
