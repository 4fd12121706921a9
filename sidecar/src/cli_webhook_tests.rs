//! The sidecar container the operator's webhook injects, as built by the operator's own code
//! (`operator/src/webhook/inject.rs`, `account_set.rs`), read by this CLI: every flag of its
//! argv and every env name it sets is one [`Args`] accepts, with the value the webhook gives
//! it, and its probe command is one `probe.rs` runs. Nothing here restates the names.

use clap::{CommandFactory, Parser};
use k8s_openapi::api::core::v1::{Container, Pod};
use mailcred_core::sidecar_contract::{self as contract, env_reference, flag};
use mailcred_operator::config::{Config, SidecarMode};
use mailcred_operator::webhook::account_set::Target;
use mailcred_operator::webhook::annotation::AppToken;
use mailcred_operator::webhook::inject::{SIDECAR_NAME, injection_for};

use super::Args;

/// Every optional part of the sidecar's env switched on.
const OPERATOR_ARGV: [&str; 5] = [
    "mailcred-operator",
    "--sidecar-cache-ttl-seconds=60",
    "--sidecar-trusted-kms-endpoint=http://127.0.0.1:5000",
    "--sidecar-trusted-kms-endpoint=https://kms.vpce.example",
    "--sidecar-metrics-port=15091",
];

/// Values the kubelet gives the downward-API env in a test pod.
fn downward(name: &str) -> &'static str {
    match name {
        contract::ENV_POD_NAME => "reports-7d9f8b6c5-abcde",
        contract::ENV_POD_NAMESPACE => "shop",
        contract::ENV_SERVICE_ACCOUNT => "mailer",
        other => panic!("the webhook sets {other} from the downward API: give it a value here"),
    }
}

/// The sidecar container of the admission patch for a plain pod, in both sidecar modes.
fn injected(target: &Target) -> Vec<Container> {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "app", "namespace": "shop"},
        "spec": {"serviceAccountName": "mailer", "containers": [{"name": "app", "image": "app"}]}
    }))
    .expect("a pod");
    [SidecarMode::Native, SidecarMode::Container]
        .into_iter()
        .map(|mode| {
            let mut args = Config::parse_from(OPERATOR_ARGV).sidecar;
            args.sidecar_mode = mode;
            let patch =
                injection_for(&pod, &args, target, AppToken::default()).expect("an injection");
            let ops = serde_json::to_value(&patch.operations).expect("json");
            let value = ops
                .as_array()
                .expect("a list of operations")
                .iter()
                .find(|op| {
                    let path = op["path"].as_str().unwrap_or_default();
                    path == "/spec/initContainers" || path == "/spec/containers/-"
                })
                .map(|op| op["value"].clone())
                .expect("the sidecar is added");
            let value = match value {
                serde_json::Value::Array(mut list) => list.remove(0),
                one => one,
            };
            serde_json::from_value(value).expect("a container")
        })
        .collect()
}

/// The argv the sidecar starts with: the webhook's args with `$(NAME)` expanded as the kubelet
/// does, then each env var given as the flag that reads it (clap takes the process env, which
/// a test must not change), so that its value is parsed too.
fn effective_argv(sidecar: &Container) -> Vec<String> {
    let command = Args::command();
    let env = sidecar.env.clone().unwrap_or_default();
    let value_of = |e: &k8s_openapi::api::core::v1::EnvVar| match &e.value {
        Some(v) => v.clone(),
        None => downward(&e.name).to_string(),
    };
    let mut argv = vec![contract::SIDECAR_BINARY.to_string()];
    for arg in sidecar.args.iter().flatten() {
        let expanded = env.iter().fold(arg.clone(), |a, e| {
            a.replace(&env_reference(&e.name), &value_of(e))
        });
        assert!(
            !expanded.contains("$("),
            "{arg}: an env reference the pod does not define"
        );
        argv.push(expanded);
    }
    for e in &env {
        let reader = command
            .get_arguments()
            .find(|a| a.get_env().and_then(|n| n.to_str()) == Some(e.name.as_str()))
            .unwrap_or_else(|| panic!("the webhook sets {} but no sidecar flag reads it", e.name));
        let long = reader
            .get_long()
            .expect("env-backed flags have a long name");
        if argv.iter().any(|a| *a == flag(long)) {
            continue; // the argv passes it already (the namespace); the flag wins over env
        }
        argv.push(flag(long));
        argv.push(value_of(e));
    }
    argv
}

#[test]
fn the_injected_container_uses_only_names_the_sidecar_accepts() {
    let targets = [
        Target::Credentials(vec!["billing".into(), "alerts".into()]),
        Target::AccountSet("crm".into()),
    ];
    for target in &targets {
        for sidecar in injected(target) {
            assert_eq!(sidecar.name, SIDECAR_NAME);
            let argv = effective_argv(&sidecar);
            let args = Args::try_parse_from(&argv)
                .unwrap_or_else(|e| panic!("{target:?}: {argv:?} does not parse: {e}"));
            assert_eq!(args.namespace.as_deref(), Some("shop"));
            assert_eq!(args.service_account.as_deref(), Some("mailer"));
            assert_eq!(args.cache_ttl_seconds, 60);
            assert_eq!(args.trusted_kms_endpoints.len(), 2);
            assert_eq!(
                args.metrics_listen.map(|a| a.port()),
                Some(contract::DEFAULT_METRICS_PORT)
            );
            match target {
                Target::Credentials(names) => assert_eq!(&args.credentials, names),
                Target::AccountSet(set) => {
                    assert_eq!(args.account_set.as_ref(), Some(set));
                    assert_eq!(
                        args.write_app_token.as_deref(),
                        Some(std::path::Path::new(contract::APP_TOKEN_PATH))
                    );
                }
            }

            let probe = sidecar
                .readiness_probe
                .and_then(|p| p.exec)
                .and_then(|e| e.command)
                .expect("an exec readiness probe");
            assert_eq!(probe[0], contract::SIDECAR_BINARY);
            assert_eq!(probe[1], contract::PROBE_SUBCOMMAND);
            let (_, addr, path) = crate::probe::target(&probe[2..]).expect("the probe parses");
            assert_eq!(addr, args.admin_listen, "the probe asks the admin listener");
            assert_eq!(path, contract::READY_PATH);
        }
    }
}
