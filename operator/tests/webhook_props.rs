//! Property tests of the admission handler: whatever arrives, it answers (never panics), a
//! denial always carries a message, and a patch always applies to the pod it was made for.

mod common;

use std::sync::Arc;

use base64::Engine;
use clap::Parser;
use kube::runtime::{reflector, watcher};
use mailcred_core::crd::MailCredential;
use mailcred_operator::config::{Config, InvalidPodPolicy};
use mailcred_operator::webhook::admission::Credentials;
use mailcred_operator::webhook::admission::{Admission, Outcome};
use proptest::prelude::*;
use serde_json::{Value, json};

fn admission() -> Arc<Admission> {
    let (store, mut writer) = reflector::store::<MailCredential>();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(common::credential(|_| {})));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    Arc::new(Admission {
        credentials: Credentials::new(store, None),
        sidecar: Config::parse_from(["mailcred-operator"]).sidecar,
        policy: InvalidPodPolicy::Deny,
    })
}

fn review(annotation: &str, service_account: &str, containers: usize) -> Value {
    let containers: Vec<Value> = (0..containers)
        .map(|i| json!({"name": format!("c{i}"), "image": "x"}))
        .collect();
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "mail", "operation": "CREATE", "userInfo": {},
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "annotations": {"mailcred.io/inject": annotation}},
                "spec": {"serviceAccountName": service_account, "containers": containers}}
        }
    })
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_an_answer(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let a = admission();
        let (status, answer, outcome) = run(a.review(&body));
        prop_assert_eq!(status.as_u16(), 400);
        prop_assert_eq!(outcome, Outcome::Invalid);
        prop_assert_eq!(&answer["response"]["allowed"], &json!(false));
    }

    #[test]
    fn any_annotation_and_service_account_is_answered_consistently(
        annotation in "[a-z, ,.*-]{0,40}|smtp|smtp,smtp| smtp ",
        service_account in "mailer|reporter|default|[a-z]{1,8}",
        containers in 0usize..4,
    ) {
        let a = admission();
        let input = review(&annotation, &service_account, containers);
        let (status, answer, outcome) = run(a.review(&serde_json::to_vec(&input).unwrap()));
        prop_assert_eq!(status.as_u16(), 200);
        let response = &answer["response"];
        prop_assert_eq!(&response["uid"], &json!("u"));
        match outcome {
            Outcome::Denied => {
                prop_assert_eq!(&response["allowed"], &json!(false));
                prop_assert!(response["status"]["message"].as_str().unwrap().starts_with("mailcred: "));
            }
            Outcome::Injected => {
                prop_assert_eq!(&response["allowed"], &json!(true));
                let bytes = base64::engine::general_purpose::STANDARD.decode(response["patch"].as_str().unwrap()).unwrap();
                let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
                let mut pod = input["request"]["object"].clone();
                prop_assert!(json_patch::patch(&mut pod, &patch).is_ok());
                // Only a pod allowed to use `smtp` gets here.
                prop_assert!(["mailer", "reporter"].contains(&service_account.as_str()));
                // And injecting the injected pod again changes nothing.
                let mut again = input.clone();
                again["request"]["object"] = pod;
                let (_, answer2, outcome2) = run(a.review(&serde_json::to_vec(&again).unwrap()));
                prop_assert_eq!(outcome2, Outcome::Unchanged);
                prop_assert!(answer2["response"].get("patch").is_none());
            }
            other => prop_assert!(false, "unexpected outcome {:?}", other),
        }
    }
}
