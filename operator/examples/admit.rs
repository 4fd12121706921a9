//! The webhook's answer for one Pod, without a cluster: prints the Pod as the API server would
//! store it after our mutating webhook (the AdmissionReview response's JSON patch applied).
//! e2e/pod/ runs the sidecar container of that output in podman, so the container that runs
//! there is the one this operator injects, not a hand-written copy.
//!
//!   cargo run -q -p mailcred-operator --example admit -- POD.json CREDENTIAL.yaml \
//!       [operator flags, e.g. --sidecar-image IMAGE --sidecar-env NAME=VALUE]
//!
//! CREDENTIAL (YAML or JSON, e.g. `kubectl mailcred seal` output) is what the webhook's cache
//! holds; the Pod is the `request.object` of a CREATE review in the credential's namespace.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use clap::Parser;
use kube::runtime::{reflector, watcher};
use mailcred_core::crd::MailCredential;
use mailcred_operator::config::{Config, InvalidPodPolicy};
use mailcred_operator::webhook::admission::{Admission, Credentials};
use serde_json::{Value, json};

fn main() -> ExitCode {
    match run() {
        Ok(pod) => {
            println!("{pod}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("admit: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<Value> {
    let argv: Vec<String> = std::env::args().collect();
    let [_, pod_path, credential_path, flags @ ..] = argv.as_slice() else {
        bail!("usage: admit POD.json CREDENTIAL.yaml [operator flags]");
    };
    let pod: Value = serde_json::from_str(
        &std::fs::read_to_string(pod_path).with_context(|| format!("reading {pod_path}"))?,
    )
    .context("the pod is not JSON")?;
    let credential: MailCredential = serde_saphyr::from_str(
        &std::fs::read_to_string(credential_path)
            .with_context(|| format!("reading {credential_path}"))?,
    )
    .context("not a MailCredential")?;
    let namespace = credential
        .metadata
        .namespace
        .clone()
        .context("the MailCredential has no namespace")?;

    let (store, mut writer) = reflector::store::<MailCredential>();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(credential));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let config = Config::try_parse_from(
        std::iter::once("mailcred-operator").chain(flags.iter().map(String::as_str)),
    )?;
    let admission = Arc::new(Admission {
        credentials: Credentials::new(store, None),
        sidecar: config.sidecar,
        policy: InvalidPodPolicy::Deny,
    });
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": "CREATE", "userInfo": {}, "object": pod
        }
    });
    let body = serde_json::to_vec(&review)?;
    let (status, answer, outcome) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(admission.review(&body));
    let response = &answer["response"];
    if !status.is_success() || response["allowed"] != true {
        bail!("the webhook did not admit the pod ({outcome:?}): {response}");
    }
    let mut patched = pod;
    if let Some(b64) = response["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64)?;
        let patch: json_patch::Patch = serde_json::from_slice(&bytes)?;
        json_patch::patch(&mut patched, &patch).context("applying the webhook's patch")?;
    }
    Ok(patched)
}
