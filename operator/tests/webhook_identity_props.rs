//! Property: whatever the pod's containers, mounts and env, whatever the webhook order and the
//! sidecar mode, after admission only the sidecar holds the ServiceAccount token and the cloud
//! identity, the pod is valid, and a further review changes nothing.

mod common;

use common::apiserver::{Cloud, admit, containers};
use common::injected::{
    admission, assert_keys_with_the_sidecar_only, eks_hook, our_hook, submitted,
};
use mailcred_operator::config::SidecarMode;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Volumes an app may bring: plain data, its own API-audience token, a token for Vault.
fn extra_volume(name: &str) -> Value {
    match name {
        "own-token" => {
            json!({"name": name, "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}})
        }
        "vault-token" => {
            json!({"name": name, "projected": {"sources": [{"serviceAccountToken": {"audience": "vault", "path": "t"}}]}})
        }
        _ => json!({"name": name, "emptyDir": {}}),
    }
}

const EXTRAS: [&str; 4] = ["data", "cache", "own-token", "vault-token"];

#[derive(Debug, Clone)]
struct Shape {
    mounts: Vec<bool>,
    log_env: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        proptest::collection::vec(any::<bool>(), EXTRAS.len()),
        any::<bool>(),
    )
        .prop_map(|(mounts, log_env)| Shape { mounts, log_env })
}

fn build(inits: &[Shape], apps: &[Shape], automount: Option<bool>) -> Value {
    let init_names: Vec<String> = (0..inits.len()).map(|i| format!("init{i}")).collect();
    let app_names: Vec<String> = (0..apps.len()).map(|i| format!("app{i}")).collect();
    let init_refs: Vec<&str> = init_names.iter().map(String::as_str).collect();
    let app_refs: Vec<&str> = app_names.iter().map(String::as_str).collect();
    let mut pod = submitted(&init_refs, &app_refs, json!({}));
    let mut used = Vec::new();
    for (list, shapes) in [("initContainers", inits), ("containers", apps)] {
        for (i, s) in shapes.iter().enumerate() {
            let c = &mut pod["spec"][list][i];
            let mounts: Vec<Value> = EXTRAS
                .iter()
                .zip(&s.mounts)
                .filter(|(_, on)| **on)
                .map(|(name, _)| {
                    used.push(*name);
                    json!({"name": name, "mountPath": format!("/mnt/{name}")})
                })
                .collect();
            if !mounts.is_empty() {
                c["volumeMounts"] = json!(mounts);
            }
            if s.log_env {
                c["env"] = json!([{"name": "LOG_LEVEL", "value": "info"}]);
            }
        }
    }
    let volumes: Vec<Value> = EXTRAS
        .iter()
        .filter(|n| used.contains(n))
        .map(|n| extra_volume(n))
        .collect();
    if !volumes.is_empty() {
        pod["spec"]["volumes"] = json!(volumes);
    }
    if let Some(a) = automount {
        pod["spec"]["automountServiceAccountToken"] = json!(a);
    }
    pod
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_pod_ends_with_the_keys_in_the_sidecar_only(
        inits in proptest::collection::vec(shape(), 0..3),
        apps in proptest::collection::vec(shape(), 1..4),
        automount in proptest::option::of(any::<bool>()),
        native in any::<bool>(),
        cloud in proptest::option::of(prop_oneof![Just(Cloud::Irsa), Just(Cloud::PodIdentity)]),
        eks_first in any::<bool>(),
        eks_if_needed in any::<bool>(),
        honours_skip in any::<bool>(),
    ) {
        let mode = if native { SidecarMode::Native } else { SidecarMode::Container };
        let a = admission(mode);
        let pod = build(&inits, &apps, automount);
        // The one ordering that defeats us (see the residual test in webhook_identity.rs).
        let honours_skip = honours_skip || (!eks_first && eks_if_needed);
        let pod = match (cloud, eks_first) {
            (None, _) => admit(pod, &mut [our_hook(&a)]),
            (Some(c), true) => admit(pod, &mut [eks_hook(c, eks_if_needed, honours_skip), our_hook(&a)]),
            (Some(c), false) => admit(pod, &mut [our_hook(&a), eks_hook(c, eks_if_needed, honours_skip)]),
        };
        assert_keys_with_the_sidecar_only(&a, &pod, cloud);
        // The app's own volumes that open neither the API nor KMS stay where they were.
        for (prefix, shapes) in [("init", &inits), ("app", &apps)] {
            for (i, s) in shapes.iter().enumerate() {
                let name = format!("{prefix}{i}");
                let c = containers(&pod).into_iter().find(|c| c["name"] == name.as_str()).unwrap();
                let kept: Vec<&str> = c["volumeMounts"].as_array().into_iter().flatten()
                    .filter_map(|m| m["name"].as_str()).collect();
                let want: Vec<&str> = EXTRAS.iter().zip(&s.mounts)
                    .filter(|(n, on)| **on && **n != "own-token").map(|(n, _)| *n).collect();
                prop_assert_eq!(kept, want);
            }
        }
    }
}
