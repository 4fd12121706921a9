//! Fixtures: a pending MailCredential in a directory store, a local RSA key pair, the router
//! with a fixed client address, and a seal body made as the page makes it (core's sealer with
//! the same key and associated data).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use base64::Engine;
use http::{Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mailcred_core::crd::{MailCredential, SealRequest};
use mailcred_core::kms::{DataKeySealer, LocalKms};
use mailcred_core::link_token::LinkToken;
use mailcred_core::testkit::TestCredential;
use mailcred_core::{MailPassword, envelope};
use mailcred_linkpage::keys::PublicKeys;
use mailcred_linkpage::limit::BadTokenLimiter;
use mailcred_linkpage::service::Service;
use mailcred_linkpage::store::{FileStore, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub key: LocalKms,
    pub service: Arc<Service>,
}

pub fn now() -> Time {
    Time(Timestamp::now())
}

/// A pending credential `ns/name` whose link token is returned; `minutes` until it expires
/// (negative: already expired).
pub fn pending(key: &LocalKms, ns: &str, name: &str, minutes: i64) -> (MailCredential, LinkToken) {
    let token = LinkToken::generate().unwrap();
    let mut resource = TestCredential::new(ns, name)
        .username("billing@example.test")
        .build();
    resource.spec.sealed_secret = None;
    resource.spec.seal_request = Some(SealRequest {
        token_sha256: token.sha256_hex(),
        expires_at: Time(
            Timestamp::now()
                .checked_add(SignedDuration::from_mins(minutes))
                .unwrap(),
        ),
        requested_by: "alice@platform".into(),
        replace: false,
        kms: key.key_ref(),
        used_at: None,
    });
    (resource, token)
}

pub fn write(dir: &Path, resource: &MailCredential) {
    let file = format!(
        "{}_{}.yaml",
        resource.metadata.namespace.as_deref().unwrap(),
        resource.metadata.name.as_deref().unwrap()
    );
    let yaml = serde_saphyr::to_string(resource).unwrap();
    std::fs::write(dir.join(file), format!("---\n{yaml}")).unwrap();
}

pub fn fixture(bad_tokens: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = LocalKms::generate_rsa().unwrap();
    let public = dir.path().join("key.pub");
    std::fs::write(&public, key.public_key_pem().unwrap()).unwrap();
    let store_dir = dir.path().join("creds");
    std::fs::create_dir(&store_dir).unwrap();
    let keys = PublicKeys::load(&[format!("local:{}", public.display())]).unwrap();
    let store: Arc<dyn Store> = Arc::new(FileStore::new(store_dir));
    let service = Arc::new(Service {
        store,
        keys,
        limiter: BadTokenLimiter::new(bad_tokens, Duration::from_secs(60)),
        now,
    });
    Fixture { dir, key, service }
}

impl Fixture {
    pub fn creds(&self) -> std::path::PathBuf {
        self.dir.path().join("creds")
    }

    pub fn router(&self, client: &str) -> Router {
        let addr: SocketAddr = format!("{client}:40000").parse().unwrap();
        mailcred_linkpage::http::router(self.service.clone(), 64 * 1024)
            .layer(MockConnectInfo(addr))
    }

    pub async fn stored(&self, ns: &str, name: &str) -> MailCredential {
        self.service
            .store
            .get(ns, name)
            .await
            .unwrap()
            .unwrap()
            .resource
    }
}

pub async fn call(
    router: &Router,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let response: Response<Body> = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, value)
}

pub fn link_json(ns: &str, name: &str, token: &str) -> Value {
    json!({"namespace": ns, "name": name, "token": token})
}

/// What the page posts: the envelope fields of `password` sealed for `resource` as it is (the
/// sealer is the same RSA key; the associated data is the envelope's).
pub async fn page_seal_body(
    key: &LocalKms,
    resource: &MailCredential,
    token: &str,
    aad_sha256: &str,
    password: &str,
) -> Value {
    let binding = mailcred_core::CredentialBinding::for_resource(resource).unwrap();
    let sealed = envelope::seal(key, &binding, &MailPassword::new(password.into()).unwrap())
        .await
        .unwrap();
    json!({
        "namespace": resource.metadata.namespace, "name": resource.metadata.name, "token": token,
        "aadSha256": aad_sha256, "encryptedDataKey": sealed.encrypted_data_key,
        "nonce": sealed.nonce, "ciphertext": sealed.ciphertext,
    })
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
