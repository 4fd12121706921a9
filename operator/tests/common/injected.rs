//! Our webhook as the API server calls it, and the invariant of issue #10: after admission,
//! only the sidecar holds the ServiceAccount token and the cloud identity.

use std::sync::Arc;

use base64::Engine;
use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{reflector, watcher};
use mailcred_core::crd::MailCredential;
use mailcred_operator::config::{Config, InvalidPodPolicy, SidecarMode};
use mailcred_operator::webhook::admission::Admission;
use mailcred_operator::webhook::admission::Credentials;
use serde_json::{Value, json};

use super::apiserver::{
    self, Cloud, Hook, IRSA_PATH, POD_IDENTITY_PATH, ROLE_ARN, SA_PATH, SKIP_CONTAINERS,
};

pub const SIDECAR: &str = "mailcred-sidecar";
/// Env that acts as the pod's IAM role: stated here independently of the code under test.
pub const IDENTITY_ENV: [&str; 7] = [
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];
const TOKEN_VOLUMES: [&str; 3] = [
    "aws-iam-token",
    "eks-pod-identity-token",
    "mailcred-api-token",
];

pub fn admission(mode: SidecarMode) -> Arc<Admission> {
    let (store, mut writer) = reflector::store::<MailCredential>();
    writer.apply_watcher_event(&watcher::Event::Init);
    let ready = super::credential(|v| {
        v["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok", "lastTransitionTime": "2026-11-23T06:00:00Z"}]});
    });
    writer.apply_watcher_event(&watcher::Event::InitApply(ready));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let mut sidecar = Config::parse_from(["mailcred-operator"]).sidecar;
    sidecar.sidecar_mode = mode;
    Arc::new(Admission {
        credentials: Credentials::new(store, None),
        sidecar,
        policy: InvalidPodPolicy::Deny,
    })
}

pub fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The pod as its ReplicaSet submits it, before any admission plugin.
pub fn submitted(inits: &[&str], apps: &[&str], annotations: Value) -> Value {
    let c = |n: &&str| json!({"name": n, "image": "registry.example.com/reports:1.4.2"});
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "reports-7d9f8b6c5-", "namespace": "mail", "annotations": annotations},
        "spec": {"serviceAccountName": "mailer", "containers": apps.iter().map(c).collect::<Vec<_>>()}
    });
    pod["metadata"]["annotations"]["mailcred.io/inject"] = json!("smtp");
    if !inits.is_empty() {
        pod["spec"]["initContainers"] = json!(inits.iter().map(c).collect::<Vec<_>>());
    }
    pod
}

pub fn review(pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "5f2c6a1e-0d4b-4c6e-9a51-3b7d2e8f9a10",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "mail", "operation": "CREATE", "userInfo": {}, "object": pod
        }
    })
}

/// One call of our webhook: the pod with our patch applied, and the response.
pub fn mailcred(a: &Admission, pod: &Value) -> (Value, Value) {
    let body = serde_json::to_vec(&review(pod)).expect("review encodes");
    let (status, answer, _) = run(a.review(&body));
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    (patched(pod, &answer), answer["response"].clone())
}

/// `pod` with the answer's patch (if any) applied.
pub fn patched(pod: &Value, answer: &Value) -> Value {
    let mut out = pod.clone();
    if let Some(b64) = answer["response"]["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64 patch");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("JSON patch");
        json_patch::patch(&mut out, &patch).unwrap_or_else(|e| panic!("{e}: {patch:?} on {pod}"));
    }
    out
}

pub fn our_hook(a: &Admission) -> Hook<'_> {
    Hook {
        if_needed: true,
        call: Box::new(move |pod| mailcred(a, pod).0),
    }
}

pub fn eks_hook<'a>(cloud: Cloud, if_needed: bool, honours_skip: bool) -> Hook<'a> {
    Hook {
        if_needed,
        call: Box::new(move |pod| apiserver::eks_webhook(pod, cloud, honours_skip)),
    }
}

pub fn sidecar(pod: &Value) -> &Value {
    apiserver::containers(pod)
        .into_iter()
        .find(|c| c["name"] == SIDECAR)
        .expect("the sidecar is injected")
}

pub fn env(c: &Value, name: &str) -> Option<String> {
    c["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"]
        .as_str()
        .map(String::from)
}

pub fn mount_of<'a>(c: &'a Value, volume: &str) -> Option<&'a Value> {
    c["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == volume)
}

fn under(path: &str, dir: &str) -> bool {
    path.trim_end_matches('/') == dir || path.starts_with(&format!("{dir}/"))
}

/// No app container can read a token or act as the pod's IAM role.
pub fn assert_apps_hold_no_keys(pod: &Value) {
    for c in apiserver::containers(pod) {
        if c["name"] == SIDECAR {
            continue;
        }
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let path = m["mountPath"].as_str().unwrap_or_default();
            let name = m["name"].as_str().unwrap_or_default();
            for dir in [SA_PATH, IRSA_PATH, POD_IDENTITY_PATH] {
                assert!(!under(path, dir), "{} still mounts {path}", c["name"]);
            }
            assert!(
                !name.starts_with("kube-api-access-") && !TOKEN_VOLUMES.contains(&name),
                "{} still mounts {name}",
                c["name"]
            );
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or_default();
            assert!(
                !IDENTITY_ENV.contains(&name),
                "{} still has {name}",
                c["name"]
            );
        }
    }
}

/// The whole invariant, for a pod after admission; `cloud` is the identity the pod was given.
pub fn assert_keys_with_the_sidecar_only(a: &Admission, pod: &Value, cloud: Option<Cloud>) {
    apiserver::assert_valid(pod);
    serde_json::from_value::<Pod>(pod.clone()).expect("still a valid Pod");
    assert_apps_hold_no_keys(pod);
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    assert!(
        !volumes.iter().any(|v| v["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("kube-api-access-")),
        "kube-api-access-* is unused and removed: {volumes:?}"
    );
    let own = volumes
        .iter()
        .find(|v| v["name"] == "mailcred-api-token")
        .expect("the sidecar's token volume");
    assert_eq!(
        own["projected"],
        json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3600, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]})
    );
    let s = sidecar(pod);
    assert_eq!(
        mount_of(s, "mailcred-api-token"),
        Some(&json!({"name": "mailcred-api-token", "mountPath": SA_PATH, "readOnly": true}))
    );
    match cloud {
        Some(Cloud::Irsa) => {
            assert_eq!(env(s, "AWS_ROLE_ARN").as_deref(), Some(ROLE_ARN));
            let file = env(s, "AWS_WEB_IDENTITY_TOKEN_FILE");
            assert_eq!(file, Some(format!("{IRSA_PATH}/token")));
            assert_eq!(env(s, "AWS_REGION").as_deref(), Some("eu-west-1"));
            assert_eq!(
                mount_of(s, "aws-iam-token").map(|m| &m["mountPath"]),
                Some(&json!(IRSA_PATH))
            );
        }
        Some(Cloud::PodIdentity) => {
            assert!(env(s, "AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some());
            let file = env(s, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
            assert_eq!(
                file,
                Some(format!("{POD_IDENTITY_PATH}/eks-pod-identity-token"))
            );
            let mount = mount_of(s, "eks-pod-identity-token").map(|m| &m["mountPath"]);
            assert_eq!(mount, Some(&json!(POD_IDENTITY_PATH)));
        }
        None => assert!(IDENTITY_ENV.iter().all(|n| env(s, n).is_none())),
    }
    let apps: Vec<&str> = apiserver::containers(pod)
        .into_iter()
        .filter_map(|c| c["name"].as_str())
        .filter(|n| *n != SIDECAR)
        .collect();
    let skip = pod["metadata"]["annotations"][SKIP_CONTAINERS]
        .as_str()
        .unwrap_or_default();
    let skipped: Vec<&str> = skip.split(',').collect();
    assert!(
        apps.iter().all(|n| skipped.contains(n)),
        "{skip:?} names {apps:?}"
    );
    assert!(!skipped.contains(&SIDECAR), "{skip:?}");
    // Idempotent: the admitted pod reviewed again needs nothing.
    let (_, again) = mailcred(a, pod);
    assert!(
        again.get("patch").is_none(),
        "reinvocation patches again: {again}"
    );
}
