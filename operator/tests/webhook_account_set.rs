//! A pod annotated `mailcred.io/account-set: crm` through the simulated admission chain
//! (tests/common/apiserver.rs): the sidecar in account-set mode, the app token in a per-pod
//! memory volume (read-write in the sidecar, read-only in every app container), the app env,
//! the identity rules unchanged; and the refusals (both annotations, a bad set name).

mod common;

use common::apiserver::{self, Cloud, admit};
use common::injected::{
    SIDECAR, admission, assert_keys_with_the_sidecar_only, eks_hook, env, mount_of, our_hook, run,
    sidecar, submitted,
};
use mailcred_operator::config::SidecarMode;
use serde_json::{Value, json};

const MODES: [SidecarMode; 2] = [SidecarMode::Native, SidecarMode::Container];
const TOKEN_VOLUME: &str = "mailcred-app-token";

/// A pod of the `crm` set: the account-set annotation instead of `mailcred.io/inject`.
fn set_pod(inits: &[&str], apps: &[&str], set: &str) -> Value {
    let mut pod = submitted(inits, apps, json!({}));
    let a = pod["metadata"]["annotations"].as_object_mut().unwrap();
    a.remove("mailcred.io/inject");
    a.insert("mailcred.io/account-set".into(), json!(set));
    pod
}

fn apps(pod: &Value) -> Vec<&Value> {
    pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] != SIDECAR)
        .collect()
}

#[test]
fn an_account_set_pod_gets_the_set_sidecar_the_token_volume_and_the_app_env() {
    for mode in MODES {
        let a = admission(mode);
        let pod = admit(
            set_pod(&["migrate"], &["app", "worker"], "crm"),
            &mut [our_hook(&a)],
        );
        assert_keys_with_the_sidecar_only(&a, &pod, None);

        let s = sidecar(&pod);
        assert_eq!(
            s["args"],
            json!([
                "--account-set",
                "crm",
                "--namespace",
                "$(POD_NAMESPACE)",
                "--write-app-token",
                "/var/run/mailcred/app-token"
            ]),
            "{mode:?}"
        );
        assert_eq!(
            env(s, "MAILCRED_REGISTRATION_LISTEN").as_deref(),
            Some("127.0.0.1:15093")
        );
        assert_eq!(
            mount_of(s, TOKEN_VOLUME),
            Some(
                &json!({"name": TOKEN_VOLUME, "mountPath": "/var/run/mailcred", "readOnly": false})
            )
        );
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        let token: Vec<&Value> = volumes
            .iter()
            .filter(|v| v["name"] == TOKEN_VOLUME)
            .collect();
        assert_eq!(
            token,
            [&json!({"name": TOKEN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})]
        );
        for app in apps(&pod) {
            assert_eq!(
                mount_of(app, TOKEN_VOLUME),
                Some(
                    &json!({"name": TOKEN_VOLUME, "mountPath": "/var/run/mailcred", "readOnly": true})
                ),
                "{}",
                app["name"]
            );
            assert_eq!(
                env(app, "MAILCRED_APP_TOKEN_FILE").as_deref(),
                Some("/var/run/mailcred/app-token")
            );
            assert_eq!(
                env(app, "MAILCRED_REGISTRATION_URL").as_deref(),
                Some("http://127.0.0.1:15093")
            );
            assert_eq!(
                env(app, "MAILCRED_SMTP_URL").as_deref(),
                Some("smtp://127.0.0.1:2525")
            );
            assert_eq!(
                env(app, "MAILCRED_IMAP_URL").as_deref(),
                Some("imap://127.0.0.1:1143")
            );
        }
        // Init containers run before the sidecar wrote a token: they get neither mount nor env.
        let init = &pod["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "migrate")
            .unwrap();
        assert!(mount_of(init, TOKEN_VOLUME).is_none());
        assert_eq!(
            pod["metadata"]["annotations"]["mailcred.io/injected"],
            "account-set=crm"
        );
    }
}

#[test]
fn identity_from_the_eks_webhook_still_reaches_only_the_sidecar_of_a_set() {
    for mode in MODES {
        for cloud in [Cloud::Irsa, Cloud::PodIdentity] {
            let a = admission(mode);
            let pod = admit(
                set_pod(&[], &["app"], "crm"),
                &mut [our_hook(&a), eks_hook(cloud, false, true)],
            );
            assert_keys_with_the_sidecar_only(&a, &pod, Some(cloud));
            // The token volume survives the reinvocation, once.
            let n = pod["spec"]["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| v["name"] == TOKEN_VOLUME)
                .count();
            assert_eq!(n, 1, "{mode:?} {cloud:?}");
        }
    }
}

#[test]
fn reinvocation_adds_nothing_and_an_existing_mount_at_the_path_is_kept() {
    let a = admission(SidecarMode::Native);
    let once = admit(set_pod(&[], &["app"], "crm"), &mut [our_hook(&a)]);
    let (twice, response) = common::injected::mailcred(&a, &once);
    assert_eq!(twice, once);
    assert!(response["patch"].is_null(), "{response}");

    // An app that already mounts something at /var/run/mailcred keeps it (no double mount).
    let mut pod = set_pod(&[], &["app"], "crm");
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "own", "mountPath": "/var/run/mailcred/"}]);
    pod["spec"]["volumes"] = json!([{"name": "own", "emptyDir": {}}]);
    let out = admit(pod, &mut [our_hook(&a)]);
    apiserver::assert_valid(&out);
    assert!(mount_of(&out["spec"]["containers"][0], TOKEN_VOLUME).is_none());
}

fn refusal(pod: &Value) -> String {
    let a = admission(SidecarMode::Native);
    let body = serde_json::to_vec(&common::injected::review(pod)).unwrap();
    let (status, answer, _) = run(a.review(&body));
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert!(answer["response"]["patch"].is_null());
    answer["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn both_annotations_or_a_bad_set_name_are_refused_naming_the_fix() {
    let mut both = set_pod(&[], &["app"], "crm");
    both["metadata"]["annotations"]["mailcred.io/inject"] = json!("smtp");
    let why = refusal(&both);
    assert!(
        why.starts_with(
            "mailcred: the pod has both mailcred.io/inject and mailcred.io/account-set"
        ) && why.contains("label the named credentials with mailcred.io/account-set=<set>"),
        "{why}"
    );
    for bad in ["CRM", "", "crm.prod", "-crm"] {
        let why = refusal(&set_pod(&[], &["app"], bad));
        assert!(
            why.contains("annotation mailcred.io/account-set: account set")
                && why.contains("use 1 to 63 lowercase letters"),
            "{bad:?}: {why}"
        );
    }
}
