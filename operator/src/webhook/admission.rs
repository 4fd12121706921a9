//! One AdmissionReview in, one out. Never panics on input: a body that is not a v1
//! AdmissionReview gets HTTP 400 with an `invalid` review saying what is wrong; everything
//! else gets 200 with allowed, denied (reason in the message) or a JSON patch.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use mailcred_core::crd::MailCredential;
use tracing::{info, warn};

use super::account_set;
use super::annotation::{self, APP_TOKEN_ANNOTATION, AppToken, INJECT_ANNOTATION};
use super::inject;
use crate::config::{InvalidPodPolicy, SidecarArgs};
use crate::status::READY;

pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
/// The API server may truncate longer warnings.
const MAX_WARNING: usize = 256;
/// Several refusal reasons can be joined in one admit warning.
const MAX_ADMIT_WARNING: usize = 2048;

/// How a review ended, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The sidecar (or missing env) was added.
    Injected,
    /// Asked for injection, already injected: nothing to add.
    Unchanged,
    /// Not a pod creation, or no annotation: untouched.
    Skipped,
    Denied,
    /// Could not inject, admitted without the sidecar (invalid-pod-policy admit).
    AdmittedUninjected,
    /// Not a v1 AdmissionReview.
    Invalid,
}

impl Outcome {
    /// Every outcome: the admissions counter starts with each at 0.
    pub const ALL: [Outcome; 6] = [
        Outcome::Injected,
        Outcome::Unchanged,
        Outcome::Skipped,
        Outcome::Denied,
        Outcome::AdmittedUninjected,
        Outcome::Invalid,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped => "skipped",
            Outcome::Denied => "denied",
            Outcome::AdmittedUninjected => "admitted_uninjected",
            Outcome::Invalid => "invalid",
        }
    }
}

/// MailCredentials as the webhook sees them: a watch cache, and a direct read on a miss (a
/// credential applied together with its Deployment may not be cached yet).
#[derive(Clone)]
pub struct Credentials {
    store: Store<MailCredential>,
    fallback: Option<(Client, Duration)>,
}

impl Credentials {
    pub fn new(store: Store<MailCredential>, fallback: Option<(Client, Duration)>) -> Self {
        Self { store, fallback }
    }

    /// `Ok(None)` when the credential does not exist; `Err` when that could not be decided.
    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<MailCredential>>, String> {
        if let Some(c) = self.store.get(&ObjectRef::new(name).within(namespace)) {
            return Ok(Some(c));
        }
        let Some((client, timeout)) = &self.fallback else {
            return Ok(None);
        };
        let api = Api::<MailCredential>::namespaced(client.clone(), namespace);
        match tokio::time::timeout(*timeout, api.get_opt(name)).await {
            Ok(Ok(found)) => Ok(found.map(Arc::new)),
            Ok(Err(e)) => Err(format!("reading it from the API failed: {e}")),
            Err(_) => Err(format!(
                "the API server did not answer within {} ms",
                timeout.as_millis()
            )),
        }
    }
}

/// The admission logic and its settings.
pub struct Admission {
    pub credentials: Credentials,
    pub sidecar: SidecarArgs,
    pub policy: InvalidPodPolicy,
}

type Reply = (StatusCode, serde_json::Value, Outcome);
/// A decision, and whether the app containers keep the token (for the operator's metric).
type Decided = (AdmissionResponse, Outcome, AppToken);

/// One answered review.
pub struct Answer {
    pub status: StatusCode,
    pub review: serde_json::Value,
    pub outcome: Outcome,
    /// The pod opted out (`mailcred.io/app-token: keep`) and was injected or already was.
    pub app_token_kept: bool,
}

/// The review as JSON, with `response.patch` base64-encoded as the API server requires
/// (kube-core serializes the bytes as a number array: kube-rs/kube#1781).
pub fn review_json(review: &AdmissionReview<DynamicObject>) -> serde_json::Value {
    use base64::Engine;
    let mut value = serde_json::to_value(review).unwrap_or_else(|e| {
        serde_json::json!({"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": {"uid": "", "allowed": false, "status": {"message": format!("mailcred: cannot encode the response: {e}")}}})
    });
    if let Some(patch) = review.response.as_ref().and_then(|r| r.patch.as_ref()) {
        value["response"]["patch"] =
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    value
}

impl Admission {
    /// Answers one request body.
    pub async fn review(&self, body: &[u8]) -> Reply {
        let answer = self.answer(body).await;
        (answer.status, answer.review, answer.outcome)
    }

    /// Answers one request body, with what the metrics need beyond the outcome.
    pub async fn answer(&self, body: &[u8]) -> Answer {
        let value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return invalid(format!("request body is not JSON: {e}")),
        };
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        if kind != "AdmissionReview" || api_version != ADMISSION_API_VERSION {
            return invalid(format!(
                "expected kind AdmissionReview, apiVersion {ADMISSION_API_VERSION}; got kind {kind:?}, apiVersion {api_version:?}; set admissionReviewVersions: [\"v1\"] in the MutatingWebhookConfiguration"
            ));
        }
        let review: AdmissionReview<DynamicObject> = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => return invalid(format!("not a valid AdmissionReview: {e}")),
        };
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(r) => r,
            Err(_) => return invalid("AdmissionReview has no request".to_string()),
        };
        let (response, outcome, app_token) = self.decide(&request).await;
        Answer {
            status: StatusCode::OK,
            review: review_json(&response.into_review()),
            outcome,
            app_token_kept: app_token == AppToken::Keep
                && matches!(outcome, Outcome::Injected | Outcome::Unchanged),
        }
    }

    async fn decide(&self, req: &AdmissionRequest<DynamicObject>) -> Decided {
        let allowed = AdmissionResponse::from(req);
        let is_pod = req.kind.group.is_empty() && req.kind.kind == "Pod";
        if !is_pod || req.operation != Operation::Create || req.sub_resource.is_some() {
            return (allowed, Outcome::Skipped, AppToken::default());
        }
        let Some(object) = &req.object else {
            return self.refuse(
                allowed,
                format!(
                    "AdmissionReview {} is a Pod CREATE without an object; nothing to inspect",
                    req.uid
                ),
            );
        };
        let pod: Pod = match serde_json::to_value(object).and_then(serde_json::from_value) {
            Ok(p) => p,
            Err(e) => return self.refuse(allowed, format!("the object is not a valid Pod: {e}")),
        };
        let target = match account_set::target(pod.annotations()) {
            None => return (allowed, Outcome::Skipped, AppToken::default()),
            Some(Err(why)) => return self.refuse(allowed, why),
            Some(Ok(t)) => t,
        };
        let names = target.credentials();
        let app_token = match annotation::app_token(
            pod.annotations()
                .get(APP_TOKEN_ANNOTATION)
                .map(|v| v.as_str()),
        ) {
            Ok(t) => t,
            Err(why) => return self.refuse(allowed, why),
        };
        let Some(namespace) = req.namespace.clone().or_else(|| pod.namespace()) else {
            return self.refuse(allowed, "the pod has no namespace".to_string());
        };
        let pod_name = pod
            .metadata
            .name
            .clone()
            .or_else(|| pod.metadata.generate_name.as_ref().map(|g| format!("{g}*")))
            .unwrap_or_default();
        let spec = pod.spec.as_ref();
        if spec.and_then(|s| s.host_network) == Some(true) {
            return self.refuse(
                allowed,
                "the pod uses hostNetwork: the sidecar's loopback listeners would be the node's, open to every process on the node; run the pod without hostNetwork".to_string(),
            );
        }
        let service_account = spec
            .and_then(|s| {
                s.service_account_name
                    .clone()
                    .or_else(|| s.service_account.clone())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string());

        let lookups = names.iter().map(|n| self.credentials.get(&namespace, n));
        let found = futures::future::join_all(lookups).await;
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        for (name, result) in names.iter().zip(found) {
            match result {
                Ok(None) => problems.push(format!(
                    "MailCredential {namespace}/{name} does not exist; create it (kubectl mailcred seal) or fix the {INJECT_ANNOTATION} annotation"
                )),
                Err(e) => problems.push(format!(
                    "could not check MailCredential {namespace}/{name}: {e}; the pod's controller will retry"
                )),
                Ok(Some(c)) => {
                    let allowed_sas = &c.spec.access.service_accounts;
                    if !allowed_sas.iter().any(|sa| sa == &service_account) {
                        problems.push(format!(
                            "ServiceAccount {service_account} may not use MailCredential {namespace}/{name} (spec.access.serviceAccounts: [{}]); run the pod as one of those or add {service_account} to the list",
                            allowed_sas.join(", ")
                        ));
                    } else if let Some(not_ready) = not_ready(&c) {
                        warnings.push(crate::status::truncate(
                            format!("mailcred: MailCredential {namespace}/{name} is not Ready ({not_ready}); the sidecar will fail until it is fixed"),
                            MAX_WARNING,
                        ));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return self.refuse(allowed, problems.join("; "));
        }
        if app_token == AppToken::Keep {
            warnings.push(format!("mailcred: {APP_TOKEN_ANNOTATION}=keep: the app containers keep the ServiceAccount token and cloud identity, so a compromised app can read its MailCredential and decrypt it; remove the annotation unless the app needs them"));
        }

        let injection = match inject::injection_for(&pod, &self.sidecar, &target, app_token) {
            Ok(i) => i,
            Err(e) => return self.refuse(allowed, e.to_string()),
        };
        let mut response = allowed;
        if !warnings.is_empty() {
            response.warnings = Some(warnings);
        }
        if injection.operations.is_empty() {
            return (response, Outcome::Unchanged, app_token);
        }
        let added_sidecar = injection.added_sidecar;
        match response
            .clone()
            .with_patch(json_patch::Patch(injection.operations))
        {
            Ok(patched) => {
                let pod = format!("{namespace}/{pod_name}");
                info!(pod = %pod, target = %target.describe(), service_account = %service_account, added_sidecar, "injecting mailcred sidecar");
                if app_token == AppToken::Keep && added_sidecar {
                    // No Event: the pod does not exist yet (no uid) and may still be refused.
                    warn!(pod = %pod, annotation = APP_TOKEN_ANNOTATION, "app containers keep the ServiceAccount token and cloud identity: a compromised app can decrypt the credential");
                }
                let outcome = if added_sidecar {
                    Outcome::Injected
                } else {
                    Outcome::Unchanged
                };
                (patched, outcome, app_token)
            }
            Err(e) => self.refuse(response, format!("could not encode the patch: {e}")),
        }
    }

    fn refuse(&self, response: AdmissionResponse, why: String) -> Decided {
        let message = format!("mailcred: {why}");
        match self.policy {
            InvalidPodPolicy::Deny => {
                warn!(uid = %response.uid, reason = %message, "denying pod");
                (response.deny(message), Outcome::Denied, AppToken::default())
            }
            InvalidPodPolicy::Admit => {
                warn!(uid = %response.uid, reason = %message, "admitting pod without the sidecar");
                let mut response = response;
                // The API server shortens long warnings itself; this keeps the response bounded.
                response.warnings = Some(vec![crate::status::truncate(
                    format!("{message} (admitted without the mailcred sidecar)"),
                    MAX_ADMIT_WARNING,
                )]);
                (response, Outcome::AdmittedUninjected, AppToken::default())
            }
        }
    }
}

fn not_ready(c: &MailCredential) -> Option<String> {
    let ready = c
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    match ready {
        Some(r) if r.status == "True" => None,
        Some(r) => Some(format!("{}: {}", r.reason, r.message)),
        None => Some("the operator has not reported on it yet".into()),
    }
}

fn invalid(message: String) -> Answer {
    warn!(reason = %message, "invalid admission request");
    Answer {
        status: StatusCode::BAD_REQUEST,
        review: review_json(
            &AdmissionResponse::invalid(format!("mailcred: {message}")).into_review(),
        ),
        outcome: Outcome::Invalid,
        app_token_kept: false,
    }
}
