//! One replica without leader election: reconcile, self-made TLS and caBundle, injection over
//! TLS with that CA, /readyz, /metrics (every series the chart uses), SIGTERM exit 0.

use crate::fake_api::*;
use crate::operator_process::*;
use base64::Engine;
use serde_json::Value;

/// `mailcred_operator_*` names in the chart's alert rules and dashboard (the sidecar's are
/// checked against a real scrape by e2e/local, charts/rules-check.py).
fn operator_series_used_by_alerts_and_dashboard() -> Vec<String> {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/mailcred");
    let mut names = Vec::new();
    for file in ["files/alerts.yaml", "dashboards/mailcred.json"] {
        let text = std::fs::read_to_string(format!("{chart}/{file}")).unwrap();
        for (at, _) in text.match_indices("mailcred_operator_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 5, "found the names: {names:?}");
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_reconciles_serves_tls_it_made_and_shuts_down_cleanly() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let state = fake_cluster();
    let api_port = serve_api(&state, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let mut operator = start_operator(
        dir.path(),
        api_port,
        "mailcred-operator-0",
        &["--leader-elect", "false"],
    );

    // Ready once the certificate exists and the cache has synced.
    wait_ready(&operator).await;

    // The controller did its work through the kubeconfig's API server.
    let status = wait_for("the status patch", || {
        state
            .lock()
            .unwrap()
            .requests
            .iter()
            .find(|(_, m, p, _)| m == "PATCH" && p.contains("/mailcredentials/smtp/status"))
            .map(|(_, _, p, b)| (p.clone(), b.clone()))
    })
    .await;
    assert!(
        status.0.contains("fieldManager=mailcred-operator"),
        "{}",
        status.0
    );
    assert_eq!(status.1["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(status.1["status"]["conditions"][0]["status"], "True");
    {
        let s = state.lock().unwrap();
        for path in ["/roles/mailcred-smtp?", "/rolebindings/mailcred-smtp?"] {
            assert!(
                s.requests
                    .iter()
                    .any(|(_, m, p, _)| m == "PATCH" && p.contains(path)),
                "no apply of {path}"
            );
        }
    }

    // It made its CA, stored it, and told the API server to trust it.
    let ca = {
        let s = state.lock().unwrap();
        let secret = s.secret.clone().expect("webhook Secret created");
        let ca = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(secret["data"]["ca.crt"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        let bundle = s.webhook_config["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .expect("caBundle patched")
            .to_string();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(bundle)
                .unwrap(),
            ca.as_bytes()
        );
        ca
    };

    // The API server's view: a TLS call to the Service name, trusting caBundle.
    let review: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pod-create.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let answer = post_review(operator.webhook_port, &ca, &review).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"]["patch"].is_string(), "{answer}");

    let (code, metrics) = http_get(operator.metrics_port, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    for line in [
        "mailcred_operator_admission_requests_total{outcome=\"injected\"} 1",
        // Zero-initialised: an alert on rate() sees the first invalid review.
        "mailcred_operator_admission_requests_total{outcome=\"invalid\"} 0",
        "mailcred_operator_admission_requests_total{outcome=\"admitted_uninjected\"} 0",
        "mailcred_operator_injections_total 1",
        "mailcred_operator_reconciles_total{result=\"ok\"}",
        "mailcred_operator_leader 1",
        "mailcred_build_info{version=\"",
        // The classic text format (no Accept header): counters' TYPE names the _total series.
        "# TYPE mailcred_operator_injections_total counter",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}:\n{metrics}");
    }
    assert!(
        !metrics.contains("# EOF"),
        "OpenMetrics served without being asked for"
    );
    for name in operator_series_used_by_alerts_and_dashboard() {
        let present = metrics.lines().any(|l| {
            !l.starts_with('#')
                && (l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        });
        assert!(
            present,
            "{name} (used by the chart's alerts or dashboard) is not exported:\n{metrics}"
        );
    }
    assert_eq!(
        http_get(operator.metrics_port, "/healthz").await.unwrap(),
        (200, "ok".to_string())
    );

    // SIGTERM: drains and exits 0.
    let exit = terminate(&mut operator).await;
    assert!(exit.success(), "exit status {exit:?}");
}
