//! Injection: the native sidecar and the app env, the regular-container mode with several
//! credentials, reinvocation (idempotent), pods without the annotation, a not-Ready credential.

use crate::support::*;
use k8s_openapi::api::core::v1::Pod;
use mailcred_operator::config::{InvalidPodPolicy, SidecarMode};
use serde_json::json;

#[tokio::test]
async fn injects_a_native_sidecar_and_app_env_then_is_idempotent() {
    let hook = start(
        InvalidPodPolicy::Deny,
        SidecarMode::Native,
        vec![ready_credential("smtp", &["mailer"])],
    )
    .await;
    let review = fixture("pod-create.json");
    let (status, answer) = hook.post(&review).await;
    assert_eq!(status, 200);
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(answer["response"]["allowed"], true);

    let pod = patched_pod(&review, &answer);
    let typed: Pod = serde_json::from_value(pod.clone()).expect("still a valid Pod");
    let spec = typed.spec.as_ref().unwrap();
    let init = spec.init_containers.as_ref().unwrap();
    assert_eq!(init.len(), 2);
    assert_eq!(
        init[0].name, "mailcred-sidecar",
        "first, before the app's init containers"
    );
    assert_eq!(init[1].name, "migrate");
    let sidecar = serde_json::to_value(&init[0]).unwrap();
    assert_eq!(
        sidecar,
        json!({
            "name": "mailcred-sidecar",
            "image": "ghcr.io/mailcred/mailcred-sidecar:test",
            "imagePullPolicy": "IfNotPresent",
            "args": ["--credential", "smtp", "--namespace", "$(POD_NAMESPACE)"],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "MAILCRED_SERVICE_ACCOUNT", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "MAILCRED_SMTP_LISTEN", "value": "127.0.0.1:2525"},
                {"name": "MAILCRED_IMAP_LISTEN", "value": "127.0.0.1:1143"},
                {"name": "MAILCRED_ADMIN_LISTEN", "value": "127.0.0.1:15090"}
            ],
            // The only container with the ServiceAccount token (webhook_identity.rs).
            "volumeMounts": [
                {"name": "mailcred-api-token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
            ],
            "restartPolicy": "Always",
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "privileged": false,
                "readOnlyRootFilesystem": true,
                "runAsGroup": 65532,
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}
            },
            "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "10m", "memory": "32Mi"}},
            "readinessProbe": {
                "exec": {"command": ["mailcred-sidecar", "probe", "--url", "http://127.0.0.1:15090/readyz"]},
                "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3
            },
            "startupProbe": {
                "exec": {"command": ["mailcred-sidecar", "probe", "--url", "http://127.0.0.1:15090/readyz"]},
                "periodSeconds": 1, "timeoutSeconds": 2, "failureThreshold": 60
            }
        })
    );
    let want = [
        (
            "MAILCRED_SMTP_URL".to_string(),
            "smtp://127.0.0.1:2525".to_string(),
        ),
        (
            "MAILCRED_IMAP_URL".to_string(),
            "imap://127.0.0.1:1143".to_string(),
        ),
    ];
    let app = &pod["spec"]["containers"][0];
    assert_eq!(
        env_of(app)[0],
        ("LOG_LEVEL".into(), "info".into()),
        "existing env kept first"
    );
    assert_eq!(env_of(app)[1..], want);
    assert_eq!(
        env_of(&pod["spec"]["containers"][1]),
        want,
        "container without env gets it too"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["mailcred.io/injected"],
        "smtp"
    );
    assert_eq!(hook.count("injected"), 1);
    assert_eq!(hook.metrics.injections.get(), 1);

    // Reinvocation (reinvocationPolicy: IfNeeded) sees the injected pod: nothing more to add.
    let (status, again) = hook.post(&with_pod(review.clone(), pod)).await;
    assert_eq!(status, 200);
    assert_eq!(again["response"]["allowed"], true);
    assert!(
        again["response"].get("patch").is_none(),
        "idempotent: {again}"
    );
    assert_eq!(hook.count("unchanged"), 1);
    assert_eq!(
        hook.metrics.injections.get(),
        1,
        "a reinvocation is not a second injection"
    );
}

#[tokio::test]
async fn regular_container_mode_and_several_credentials() {
    let hook = start(
        InvalidPodPolicy::Deny,
        SidecarMode::Container,
        vec![
            ready_credential("smtp", &["mailer"]),
            ready_credential("imap-archive", &["mailer", "other"]),
        ],
    )
    .await;
    let mut review = fixture("pod-create.json");
    review["request"]["object"]["metadata"]["annotations"]["mailcred.io/inject"] =
        json!("smtp, imap-archive");
    let (_, answer) = hook.post(&review).await;
    let pod = patched_pod(&review, &answer);
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 3);
    let sidecar = &containers[2];
    assert_eq!(sidecar["name"], "mailcred-sidecar");
    assert!(sidecar.get("restartPolicy").is_none() && sidecar.get("startupProbe").is_none());
    assert_eq!(
        sidecar["args"],
        json!([
            "--credential",
            "smtp",
            "--credential",
            "imap-archive",
            "--namespace",
            "$(POD_NAMESPACE)"
        ])
    );
    assert_eq!(
        pod["spec"]["initContainers"].as_array().unwrap().len(),
        1,
        "init containers untouched"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["mailcred.io/injected"],
        "smtp,imap-archive"
    );

    // A later webhook added a container; reinvocation gives it the env, not a second sidecar.
    let mut pod2 = pod.clone();
    pod2["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "late", "image": "x"}));
    let (_, again) = hook.post(&with_pod(review.clone(), pod2.clone())).await;
    let pod3 = patched_pod(&with_pod(review, pod2), &again);
    assert_eq!(pod3["spec"]["containers"].as_array().unwrap().len(), 4);
    assert_eq!(env_of(&pod3["spec"]["containers"][3]).len(), 2);
}

#[tokio::test]
async fn pods_without_the_annotation_are_untouched() {
    let hook = start(InvalidPodPolicy::Deny, SidecarMode::Native, vec![]).await;
    let (status, answer) = hook.post(&fixture("pod-create-plain.json")).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["response"]["uid"],
        "0df28fbd-5f5f-11e8-bc74-36e6bb280816"
    );
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    assert!(answer["response"].get("warnings").is_none());
    assert_eq!(hook.count("skipped"), 1);
}

#[tokio::test]
async fn not_ready_credential_injects_with_a_warning() {
    let mut cred = ready_credential("smtp", &["mailer"]);
    cred.status = None;
    let hook = start(InvalidPodPolicy::Deny, SidecarMode::Native, vec![cred]).await;
    let (_, answer) = hook.post(&fixture("pod-create.json")).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"]["patch"].is_string());
    assert_eq!(
        answer["response"]["warnings"],
        json!([
            "mailcred: MailCredential mail/smtp is not Ready (the operator has not reported on it yet); the sidecar will fail until it is fixed"
        ])
    );
}
