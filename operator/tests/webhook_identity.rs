//! Issue #10: compromising the app container must not yield the secret, so after admission the
//! ServiceAccount token and the cloud identity (IRSA, EKS Pod Identity) are in the sidecar only.
//! Pods go through a simulated admission chain (tests/common/apiserver.rs): the ServiceAccount
//! plugin first and again after any webhook changed the pod, the EKS webhook before or after
//! ours, and the reinvocation round.

mod common;

use std::net::SocketAddr;

use common::apiserver::{self, Cloud, IRSA_PATH, SA_PATH, SA_VOLUME, SKIP_CONTAINERS, admit};
use common::injected::{
    IDENTITY_ENV, admission, assert_apps_hold_no_keys, assert_keys_with_the_sidecar_only, eks_hook,
    env, mailcred, mount_of, our_hook, patched, review, run, sidecar, submitted,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mailcred_operator::config::SidecarMode;
use mailcred_operator::metrics::Metrics;
use mailcred_operator::webhook;
use serde_json::{Value, json};

const MODES: [SidecarMode; 2] = [SidecarMode::Native, SidecarMode::Container];
const CLOUDS: [Cloud; 2] = [Cloud::Irsa, Cloud::PodIdentity];

#[test]
fn api_token_moves_to_the_sidecar_and_the_service_account_plugin_cannot_put_it_back() {
    for mode in MODES {
        let a = admission(mode);
        let pod = admit(
            submitted(&["migrate"], &["app", "worker"], json!({})),
            &mut [our_hook(&a)],
        );
        assert_keys_with_the_sidecar_only(&a, &pod, None);
        let mut again = pod.clone();
        apiserver::service_account_plugin(&mut again);
        assert_eq!(
            again, pod,
            "automountServiceAccountToken: false stops the plugin"
        );
        assert_eq!(
            pod["metadata"]["annotations"][SKIP_CONTAINERS],
            "migrate,app,worker"
        );
    }
}

#[test]
fn removals_keep_the_other_mounts_in_order() {
    let a = admission(SidecarMode::Native);
    let mut pod = submitted(&[], &["app"], json!({}));
    pod["spec"]["volumes"] = json!([
        {"name": "data", "emptyDir": {}},
        {"name": "cache", "emptyDir": {}},
        {"name": "own-token", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
        {"name": "vault-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "vault", "path": "t"}}]}}
    ]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "data", "mountPath": "/data"},
        {"name": "own-token", "mountPath": "/etc/token"},
        {"name": "cache", "mountPath": "/cache"},
        {"name": "vault-token", "mountPath": "/etc/vault"}
    ]);
    apiserver::service_account_plugin(&mut pod);
    let (pod, _) = mailcred(&a, &pod);
    assert_keys_with_the_sidecar_only(&a, &pod, None);
    let mounts: Vec<&str> = pod["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    // An API-audience token of the app's own goes too; a Vault one opens neither API nor KMS.
    assert_eq!(mounts, ["data", "cache", "vault-token"]);
    let volumes: Vec<&str> = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        volumes,
        ["data", "cache", "vault-token", "mailcred-api-token"]
    );
}

#[test]
fn eks_after_us_reaches_only_the_sidecar() {
    for (mode, cloud, eks_if_needed) in combos() {
        let a = admission(mode);
        let submitted = submitted(&["migrate"], &["app", "worker"], json!({}));
        let pod = admit(
            submitted,
            &mut [our_hook(&a), eks_hook(cloud, eks_if_needed, true)],
        );
        assert_keys_with_the_sidecar_only(&a, &pod, Some(cloud));
    }
}

#[test]
fn eks_after_us_ignoring_skip_containers_is_moved_by_our_reinvocation() {
    for mode in MODES {
        for cloud in CLOUDS {
            let a = admission(mode);
            let submitted = submitted(&["migrate"], &["app"], json!({}));
            let pod = admit(
                submitted,
                &mut [our_hook(&a), eks_hook(cloud, false, false)],
            );
            assert_keys_with_the_sidecar_only(&a, &pod, Some(cloud));
        }
    }
}

/// The residual the docs name: an EKS webhook that ignores skip-containers *and* is itself
/// reinvoked after our reinvocation has the last word (there is one reinvocation round).
#[test]
fn residual_an_eks_webhook_ignoring_skip_and_reinvoked_after_us_has_the_last_word() {
    let a = admission(SidecarMode::Native);
    let submitted = submitted(&[], &["app"], json!({}));
    let pod = admit(
        submitted,
        &mut [our_hook(&a), eks_hook(Cloud::Irsa, true, false)],
    );
    let app = &pod["spec"]["containers"][0];
    assert!(env(app, "AWS_ROLE_ARN").is_some());
    assert!(
        mount_of(app, SA_VOLUME).is_none(),
        "the API token stays gone"
    );
    assert!(mount_of(app, "mailcred-api-token").is_none());
}

#[test]
fn eks_before_us_is_moved_to_the_sidecar() {
    for (mode, cloud, eks_if_needed) in combos() {
        for honours_skip in [true, false] {
            let a = admission(mode);
            let submitted = submitted(&["migrate"], &["app", "worker"], json!({}));
            let mut hooks = [eks_hook(cloud, eks_if_needed, honours_skip), our_hook(&a)];
            let pod = admit(submitted, &mut hooks);
            assert_keys_with_the_sidecar_only(&a, &pod, Some(cloud));
        }
    }
}

/// A later webhook that gives only the app an identity: our reinvocation appends it to the
/// sidecar already there and takes it from the app.
#[test]
fn identity_given_to_the_app_after_injection_moves_to_the_existing_sidecar() {
    for mode in MODES {
        let a = admission(mode);
        let mut pod = admit(submitted(&[], &["app"], json!({})), &mut [our_hook(&a)]);
        let app = &mut pod["spec"]["containers"][0];
        assert_eq!(app["name"], "app");
        app["env"].as_array_mut().unwrap().extend([
            json!({"name": "AWS_REGION", "value": "eu-west-1"}),
            json!({"name": "AWS_ROLE_ARN", "value": common::apiserver::ROLE_ARN}),
            json!({"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": format!("{IRSA_PATH}/token")}),
        ]);
        app["volumeMounts"] =
            json!([{"name": "aws-iam-token", "mountPath": IRSA_PATH, "readOnly": true}]);
        pod["spec"]["volumes"].as_array_mut().unwrap().insert(
            0,
            json!({"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "sts.amazonaws.com", "path": "token"}}]}}),
        );
        let (pod, _) = mailcred(&a, &pod);
        assert_keys_with_the_sidecar_only(&a, &pod, Some(Cloud::Irsa));
        assert_eq!(
            env(&pod["spec"]["containers"][0], "AWS_REGION").as_deref(),
            Some("eu-west-1")
        );
    }
}

fn combos() -> impl Iterator<Item = (SidecarMode, Cloud, bool)> {
    MODES.into_iter().flat_map(|m| {
        CLOUDS
            .into_iter()
            .flat_map(move |c| [false, true].map(|i| (m, c, i)))
    })
}

#[test]
fn app_token_keep_leaves_the_app_its_token_with_a_warning() {
    let a = admission(SidecarMode::Native);
    let submitted = submitted(&[], &["app"], json!({"mailcred.io/app-token": "keep"}));
    let mut pod = submitted.clone();
    apiserver::service_account_plugin(&mut pod);
    let pod = apiserver::eks_webhook(&pod, Cloud::Irsa, true);
    let (pod, response) = mailcred(&a, &pod);
    assert_eq!(
        response["warnings"],
        json!([
            "mailcred: mailcred.io/app-token=keep: the app containers keep the ServiceAccount token and cloud identity, so a compromised app can read its MailCredential and decrypt it; remove the annotation unless the app needs them"
        ])
    );
    apiserver::assert_valid(&pod);
    let app = &pod["spec"]["containers"][0];
    assert_eq!(mount_of(app, SA_VOLUME).unwrap()["mountPath"], SA_PATH);
    assert!(env(app, "AWS_ROLE_ARN").is_some() && mount_of(app, "aws-iam-token").is_some());
    let s = sidecar(&pod);
    assert_eq!(
        mount_of(s, "mailcred-api-token").unwrap()["mountPath"],
        SA_PATH
    );
    assert_eq!(
        mount_of(s, "aws-iam-token").unwrap()["mountPath"],
        IRSA_PATH
    );
    assert!(env(s, "AWS_WEB_IDENTITY_TOKEN_FILE").is_some());
    assert!(pod["spec"].get("automountServiceAccountToken").is_none());
    assert!(
        pod["metadata"]["annotations"]
            .get(SKIP_CONTAINERS)
            .is_none()
    );

    // Through the whole chain it stays that way, and the sidecar still has its own token.
    let pod = admit(
        submitted,
        &mut [our_hook(&a), eks_hook(Cloud::Irsa, true, true)],
    );
    let app = &pod["spec"]["containers"][0];
    assert!(mount_of(app, SA_VOLUME).is_some() && env(app, "AWS_ROLE_ARN").is_some());
    assert!(mount_of(sidecar(&pod), "mailcred-api-token").is_some());
    assert!(env(sidecar(&pod), "AWS_ROLE_ARN").is_some());
}

#[test]
fn an_app_token_value_other_than_keep_is_refused() {
    let a = admission(SidecarMode::Native);
    let pod = submitted(&[], &["app"], json!({"mailcred.io/app-token": "yes"}));
    let body = serde_json::to_vec(&review(&pod)).unwrap();
    let (_, answer, _) = run(a.review(&body));
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(
        answer["response"]["status"]["message"],
        "mailcred: annotation mailcred.io/app-token=\"yes\" is not understood; set it to \"keep\" (the app containers keep the ServiceAccount token and cloud identity) or remove it"
    );
}

#[test]
fn a_user_skip_list_is_kept_and_the_sidecar_dropped_from_it() {
    let a = admission(SidecarMode::Native);
    let annotations = json!({SKIP_CONTAINERS: "mailcred-sidecar,legacy"});
    let pod = admit(submitted(&[], &["app"], annotations), &mut [our_hook(&a)]);
    assert_eq!(
        pod["metadata"]["annotations"][SKIP_CONTAINERS],
        "legacy,app"
    );
    assert_apps_hold_no_keys(&pod);
}

/// The webhook's own counter and log line for opt-outs (it emits no Events: the pod has no uid
/// yet and may still be refused by a later admission step).
#[tokio::test]
async fn opt_outs_are_counted_once_per_pod() {
    let metrics = Metrics::default();
    let router = webhook::router(admission(SidecarMode::Native), metrics.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let post = |pod: Value| {
        let request = hyper::Request::post(format!("http://{addr}/mutate"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                serde_json::to_vec(&review(&pod)).unwrap(),
            )))
            .unwrap();
        let client = client.clone();
        async move {
            let response = client.request(request).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        }
    };
    let mut pod = submitted(&[], &["app"], json!({"mailcred.io/app-token": "keep"}));
    apiserver::service_account_plugin(&mut pod);
    let answer = post(pod.clone()).await;
    assert!(
        answer["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("app-token=keep")
    );
    assert_eq!(
        (metrics.injections.get(), metrics.app_token_kept.get()),
        (1, 1)
    );
    // The reinvocation of the same pod is not a second opt-out.
    post(patched(&pod, &answer)).await;
    assert_eq!(
        (metrics.injections.get(), metrics.app_token_kept.get()),
        (1, 1)
    );

    let plain = submitted(&[], &["app"], json!({}));
    post(plain).await;
    assert_eq!(
        (metrics.injections.get(), metrics.app_token_kept.get()),
        (2, 1)
    );
}

#[test]
fn identity_env_list_matches_what_eks_adds() {
    // Everything the simulated EKS webhook adds is either identity (moved) or region (copied).
    let mut pod = submitted(&[], &["app"], json!({}));
    for cloud in CLOUDS {
        pod = apiserver::eks_webhook(&pod, cloud, true);
    }
    let region = [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_STS_REGIONAL_ENDPOINTS",
    ];
    for e in pod["spec"]["containers"][0]["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        assert!(
            IDENTITY_ENV.contains(&name) || region.contains(&name),
            "{name}"
        );
    }
}
