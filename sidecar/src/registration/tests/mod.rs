//! Fixtures of the registration API tests: an in-memory [`AccountStore`], a login checker
//! that answers as told and counts its calls, the router driven in-process.

mod bad_input;
mod bounds;
mod flow;
mod kube_store;
mod openapi;
mod peers;
mod props;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use mailcred_core::UpstreamAuth;
use mailcred_core::crd::{EndpointKind, MailCredential, UpstreamEndpoint};
use mailcred_core::kms::{DataKeySealer, LocalKms};
use mailcred_core::login_check::LoginCheckError;
use serde_json::Value;
use tower::ServiceExt;
use zeroize::Zeroizing;

use super::store::{AccountStore, Listed, StoreError};
use super::{LoginChecker, Parts, RegistrationApi, RegistrationArgs, router};

pub const TOKEN: &str = "app-token-0123456789abcdef";
pub const SET: &str = "crm";
pub const NAMESPACE: &str = "shop";
pub const SA: &str = "crm-app";

/// MailCredentials by name, like one namespace of an API server.
#[derive(Default)]
pub struct MemoryStore {
    pub objects: Mutex<BTreeMap<String, MailCredential>>,
    pub creates: AtomicUsize,
}

impl MemoryStore {
    pub fn len(&self) -> usize {
        self.objects.lock().unwrap().len()
    }
    pub fn get_now(&self, name: &str) -> Option<MailCredential> {
        self.objects.lock().unwrap().get(name).cloned()
    }
    pub fn insert(&self, mut r: MailCredential) {
        r.metadata.uid = Some(format!("uid-{}", r.metadata.name.clone().unwrap()));
        self.objects
            .lock()
            .unwrap()
            .insert(r.metadata.name.clone().unwrap(), r);
    }
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn create(&self, resource: &MailCredential) -> Result<MailCredential, StoreError> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        let name = resource.metadata.name.clone().unwrap();
        let mut objects = self.objects.lock().unwrap();
        if objects.contains_key(&name) {
            return Err(StoreError::AlreadyExists);
        }
        let mut stored = resource.clone();
        stored.metadata.uid = Some(format!("uid-{name}"));
        objects.insert(name, stored.clone());
        Ok(stored)
    }
    async fn list(&self, selector: &str, limit: u32) -> Result<Listed, StoreError> {
        let (key, value) = selector.split_once('=').unwrap();
        let objects = self.objects.lock().unwrap();
        let items: Vec<_> = objects
            .values()
            .filter(|r| {
                r.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(key))
                    .map(String::as_str)
                    == Some(value)
            })
            .cloned()
            .collect();
        let truncated = items.len() > limit as usize;
        Ok(Listed {
            items: items.into_iter().take(limit as usize).collect(),
            truncated,
        })
    }
    async fn get(&self, name: &str) -> Result<Option<MailCredential>, StoreError> {
        Ok(self.get_now(name))
    }
    async fn delete(&self, name: &str, uid: Option<&str>) -> Result<bool, StoreError> {
        let mut objects = self.objects.lock().unwrap();
        match objects.get(name) {
            Some(r) if uid.is_none() || r.metadata.uid.as_deref() == uid => {
                objects.remove(name);
                Ok(true)
            }
            Some(_) => Err(StoreError::Refused("uid precondition failed".into())),
            None => Ok(false),
        }
    }
}

/// What the fake upstream answers.
#[derive(Clone)]
pub enum Answer {
    Accept,
    Reject(String),
    /// Echo the password back in the refusal (a hostile server).
    EchoPassword,
    Hang,
}

pub struct FakeChecker {
    pub answer: Answer,
    pub calls: AtomicUsize,
}

impl FakeChecker {
    pub fn new(answer: Answer) -> Arc<Self> {
        Arc::new(Self {
            answer,
            calls: AtomicUsize::new(0),
        })
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl LoginChecker for FakeChecker {
    async fn check(
        &self,
        _kind: EndpointKind,
        _endpoint: &UpstreamEndpoint,
        _username: &str,
        auth: &UpstreamAuth,
    ) -> Result<(), LoginCheckError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match &self.answer {
            Answer::Accept => Ok(()),
            Answer::Reject(reason) => Err(LoginCheckError::Rejected {
                reason: reason.clone(),
            }),
            Answer::EchoPassword => Err(LoginCheckError::Rejected {
                reason: format!("535 you sent {}", auth.password().unwrap().expose()),
            }),
            Answer::Hang => std::future::pending().await,
        }
    }
}

pub fn args() -> RegistrationArgs {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: RegistrationArgs,
    }
    Wrapper::parse_from(["test"]).args
}

pub struct Fixture {
    pub api: Arc<RegistrationApi>,
    pub store: Arc<MemoryStore>,
    pub checker: Arc<FakeChecker>,
    pub key: Arc<LocalKms>,
}

pub fn fixture_with(answer: Answer, args: &RegistrationArgs) -> Fixture {
    let store = Arc::new(MemoryStore::default());
    let checker = FakeChecker::new(answer);
    let key = Arc::new(LocalKms::generate().unwrap());
    let api = api_with(store.clone(), checker.clone(), key.clone(), args);
    Fixture {
        api,
        store,
        checker,
        key,
    }
}

pub fn api_with(
    store: Arc<dyn AccountStore>,
    checker: Arc<dyn LoginChecker>,
    sealer: Arc<dyn DataKeySealer>,
    args: &RegistrationArgs,
) -> Arc<RegistrationApi> {
    Arc::new(RegistrationApi::new(
        Parts {
            set: SET.into(),
            namespace: NAMESPACE.into(),
            service_account: SA.into(),
            app_token: Zeroizing::new(TOKEN.as_bytes().to_vec()),
            store,
            checker,
            sealer,
            last_used: Arc::new(|_| None),
        },
        args,
    ))
}

pub fn fixture(answer: Answer) -> Fixture {
    fixture_with(answer, &args())
}

/// One request through the router: status, body (JSON or Null), headers.
pub async fn call(
    api: &Arc<RegistrationApi>,
    request: Request<Body>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let response = router(api.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body, headers)
}

pub fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/v1/accounts")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

pub fn authed(method: &str, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap()
}

/// A registration body that passes every check.
pub fn good() -> Value {
    serde_json::json!({
        "name": "alice",
        "username": "alice@example.test",
        "password": "correct horse battery staple",
        "smtp": {"host": "smtp.example.test", "port": 587, "tls": "starttls"},
        "imap": {"host": "imap.example.test", "port": 993, "tls": "implicit"},
        "policy": {"smtp": {"allowedSenders": ["alice@example.test"]}},
        "lifetimeSeconds": 3600
    })
}
