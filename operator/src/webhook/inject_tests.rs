//! Unit tests of inject.rs: the sidecar container the webhook writes.

use clap::Parser;

use super::*;
use crate::config::Config;

fn env_of(c: &Container) -> Vec<(String, Option<String>)> {
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

#[test]
fn sidecar_gets_cache_ttl_kms_endpoints_and_extra_env_after_its_own() {
    let args = Config::parse_from([
        "mailcred-operator",
        "--sidecar-cache-ttl-seconds=60",
        "--sidecar-trusted-kms-endpoint=http://127.0.0.1:5000",
        "--sidecar-trusted-kms-endpoint=https://kms.vpce.example",
        "--sidecar-env=AWS_REGION=eu-west-1",
    ])
    .sidecar;
    let env = env_of(&sidecar_container(&args, &["smtp".into()]));
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "POD_NAME",
            "POD_NAMESPACE",
            "MAILCRED_SERVICE_ACCOUNT",
            "MAILCRED_SMTP_LISTEN",
            "MAILCRED_IMAP_LISTEN",
            "MAILCRED_ADMIN_LISTEN",
            "MAILCRED_CACHE_TTL_SECONDS",
            "MAILCRED_TRUSTED_KMS_ENDPOINTS",
            "AWS_REGION"
        ]
    );
    assert_eq!(env[6].1.as_deref(), Some("60"));
    assert_eq!(
        env[7].1.as_deref(),
        Some("http://127.0.0.1:5000,https://kms.vpce.example")
    );
    assert_eq!(env[8].1.as_deref(), Some("eu-west-1"));

    let plain = env_of(&sidecar_container(
        &Config::parse_from(["mailcred-operator"]).sidecar,
        &["smtp".into()],
    ));
    assert_eq!(plain.len(), 6, "nothing optional by default");
}

#[test]
fn metrics_port_is_a_named_container_port_and_the_sidecar_listens_on_it() {
    let args = Config::parse_from(["mailcred-operator", "--sidecar-metrics-port=15091"]).sidecar;
    let c = sidecar_container(&args, &["smtp".into()]);
    let listen = env_of(&c)
        .into_iter()
        .find(|(n, _)| n == contract::ENV_METRICS_LISTEN)
        .and_then(|(_, v)| v);
    assert_eq!(listen.as_deref(), Some("0.0.0.0:15091"));
    let ports = c.ports.expect("a metrics port");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].container_port, 15091);
    assert_eq!(ports[0].name.as_deref(), Some(contract::METRICS_PORT_NAME));
    let plain = sidecar_container(
        &Config::parse_from(["mailcred-operator"]).sidecar,
        &["smtp".into()],
    );
    assert!(
        plain.ports.is_none(),
        "no port without --sidecar-metrics-port"
    );

    let clash = Config::parse_from(["mailcred-operator", "--sidecar-metrics-port=15090"]);
    let err = clash.validate().unwrap_err().to_string();
    assert!(err.contains("--sidecar-metrics-port 15090"), "{err}");
    assert!(Config::try_parse_from(["mailcred-operator", "--sidecar-metrics-port=0"]).is_err());
}

#[test]
fn a_metrics_port_labels_the_pod_for_the_pod_monitor() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "app", "labels": {"app": "shop"}},
        "spec": {"containers": [{"name": "app", "image": "app"}]}
    }))
    .expect("a pod");
    let label_ops = |args: &SidecarArgs| -> Vec<String> {
        let patch = injection(&pod, args, &["smtp".into()], AppToken::default()).expect("patch");
        patch
            .operations
            .iter()
            .map(|op| serde_json::to_string(op).expect("json"))
            .filter(|op| op.contains("/metadata/labels"))
            .collect()
    };
    let with = Config::parse_from(["mailcred-operator", "--sidecar-metrics-port=15091"]).sidecar;
    let ops = label_ops(&with);
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert!(
        ops[0].contains("/metadata/labels/mailcred.io~1sidecar-metrics")
            && ops[0].contains("\"true\""),
        "{ops:?}"
    );
    let without = Config::parse_from(["mailcred-operator"]).sidecar;
    assert!(label_ops(&without).is_empty());
}

#[test]
fn run_as_user_can_be_left_to_the_platform_but_never_root() {
    let sc = |argv: &[&str]| {
        let mut full = vec!["mailcred-operator"];
        full.extend_from_slice(argv);
        sidecar_container(&Config::parse_from(full).sidecar, &["smtp".into()])
            .security_context
            .expect("a security context")
    };
    let default = sc(&[]);
    assert_eq!(default.run_as_user, Some(65532));
    assert_eq!(default.run_as_group, Some(65532));
    let unset = sc(&["--sidecar-run-as-user=unset"]);
    assert_eq!(unset.run_as_user, None);
    assert_eq!(unset.run_as_group, None);
    assert_eq!(unset.run_as_non_root, Some(true));
    for bad in ["0", "-1", "root"] {
        let arg = format!("--sidecar-run-as-user={bad}");
        assert!(
            Config::try_parse_from(["mailcred-operator", &arg]).is_err(),
            "{bad}"
        );
    }
}
