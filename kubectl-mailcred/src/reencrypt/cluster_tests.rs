//! The cluster path against kube's mock service (tower-test): exact GET/PUT requests, the
//! resourceVersion each PUT carries, and both 409 paths.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use mailcred_core::envelope;
use mailcred_core::kms::{KmsProviders, LocalKms};
use mailcred_core::testkit::TestCredential;
use serde_json::{Value, json};
use tower_test::mock;

use super::*;

const URI: &str = "/apis/mailcred.io/v1alpha1/namespaces/shop/mailcredentials/billing";

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    body: Value,
}

/// A client whose requests are answered in turn by `replies` (status, body) and recorded.
fn client(replies: Vec<(u16, Value)>) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut handle = std::pin::pin!(handle);
        let mut replies = replies.into_iter();
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            log.lock().unwrap().push(Seen { method, uri, body });
            let (code, reply) = replies.next().expect("an unexpected request");
            send.send_response(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "shop"), seen)
}

struct Keys {
    _dir: tempfile::TempDir,
    old: std::path::PathBuf,
    new: std::path::PathBuf,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.key");
    LocalKms::generate()
        .unwrap()
        .write_new_key_file(&old)
        .unwrap();
    let new = dir.path().join("new.key");
    LocalKms::generate()
        .unwrap()
        .write_new_key_file(&new)
        .unwrap();
    Keys {
        _dir: dir,
        old,
        new,
    }
}

async fn stored(keys: &Keys, version: &str, password: &str) -> Value {
    let old = LocalKms::from_file(&keys.old).unwrap();
    let mut resource = TestCredential::new("shop", "billing")
        .sealed(&old, password)
        .await;
    resource.metadata.resource_version = Some(version.into());
    serde_json::to_value(resource).unwrap()
}

fn conflict() -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 409, "reason": "Conflict", "message": "the object has been modified"})
}

fn args(keys: &Keys, extra: &[&str]) -> ReencryptArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ReencryptArgs,
    }
    let mut argv = vec!["x".to_string()];
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv.extend(["--local-key-file".into(), keys.old.display().to_string()]);
    argv.extend(["--to-local-key-file".into(), keys.new.display().to_string()]);
    Wrap::parse_from(argv).args
}

/// The password the PUT body's sealed secret opens to with `key`.
async fn opens_with(key: &std::path::Path, body: &Value) -> anyhow::Result<String> {
    let resource: MailCredential = serde_json::from_value(body.clone())?;
    let binding = mailcred_core::CredentialBinding::for_resource(&resource)?;
    let sealed = resource.spec.sealed_secret.as_ref().unwrap();
    let providers = KmsProviders {
        local: Some(LocalKms::from_file(key)?),
        ..KmsProviders::default()
    };
    Ok(envelope::open(&providers, &binding, sealed)
        .await?
        .expose()
        .to_string())
}

async fn outcomes(client: Client, args: &ReencryptArgs) -> Vec<(String, Outcome)> {
    let target = Target::from_args(args).await.unwrap();
    run_with(client, "shop", args, &target)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, o)| (id, o.unwrap()))
        .collect()
}

#[tokio::test]
async fn put_carries_the_read_resource_version_and_a_conflict_is_retried_once() {
    let keys = keys();
    let v41 = stored(&keys, "41", "s3cret-Passw0rd").await;
    // Someone labelled it meanwhile: same sealed secret, a new resourceVersion.
    let mut v42 = v41.clone();
    v42["metadata"]["resourceVersion"] = json!("42");
    v42["metadata"]["labels"] = json!({"team": "billing"});
    let (client, seen) = client(vec![
        (200, v41.clone()),
        (409, conflict()),
        (200, v42.clone()),
        (200, v42.clone()),
    ]);
    let out = outcomes(client, &args(&keys, &["billing"])).await;
    let new_id = LocalKms::from_file(&keys.new)
        .unwrap()
        .fingerprint()
        .to_string();
    let old_id = LocalKms::from_file(&keys.old)
        .unwrap()
        .fingerprint()
        .to_string();
    assert_eq!(
        out,
        [(
            "shop/billing".to_string(),
            Outcome::Moved {
                from: old_id.clone(),
                to: new_id.clone()
            }
        )]
    );
    let seen = seen.lock().unwrap().clone();
    let calls: Vec<_> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.uri.as_str()))
        .collect();
    let put = format!("{URI}?");
    assert_eq!(
        calls,
        [
            ("GET", URI),
            ("PUT", put.as_str()),
            ("GET", URI),
            ("PUT", put.as_str())
        ]
    );
    assert_eq!(seen[1].body["metadata"]["resourceVersion"], "41");
    assert_eq!(seen[3].body["metadata"]["resourceVersion"], "42");
    assert_eq!(
        seen[3].body["metadata"]["labels"]["team"], "billing",
        "the re-read object is written"
    );
    for put in [&seen[1], &seen[3]] {
        assert_eq!(
            put.body["spec"]["sealedSecret"]["kms"]["keyId"],
            json!(new_id)
        );
        assert_eq!(
            opens_with(&keys.new, &put.body).await.unwrap(),
            "s3cret-Passw0rd"
        );
        assert!(
            opens_with(&keys.old, &put.body).await.is_err(),
            "the old key opens nothing"
        );
        assert!(!put.body.to_string().contains("s3cret-Passw0rd"));
    }
}

#[tokio::test]
async fn a_seal_that_changed_meanwhile_is_never_overwritten() {
    let keys = keys();
    let v41 = stored(&keys, "41", "s3cret-Passw0rd").await;
    // Re-sealed by its owner meanwhile: another sealed secret.
    let resealed = stored(&keys, "42", "newer-Passw0rd").await;
    let (client, seen) = client(vec![(200, v41), (409, conflict()), (200, resealed)]);
    let out = outcomes(client, &args(&keys, &["billing"])).await;
    assert_eq!(
        out,
        [("shop/billing".to_string(), Outcome::ChangedMeanwhile)]
    );
    assert!(Outcome::ChangedMeanwhile.is_failure());
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.len(),
        3,
        "GET, PUT (409), GET; no second PUT: {seen:#?}"
    );
    assert_eq!(seen[2].method, "GET");
}

#[tokio::test]
async fn all_with_dry_run_lists_pages_and_writes_nothing() {
    let keys = keys();
    let a = stored(&keys, "7", "a-Passw0rd").await;
    let list = |items: Vec<Value>, next: &str| {
        json!({"apiVersion": "mailcred.io/v1alpha1", "kind": "MailCredentialList",
               "metadata": {"continue": next, "resourceVersion": "9"}, "items": items})
    };
    let (client, seen) = client(vec![
        (200, list(vec![a.clone()], "page-2")),
        (200, list(vec![a], "")),
    ]);
    let out = outcomes(client, &args(&keys, &["--all", "--dry-run"])).await;
    assert_eq!(out.len(), 2);
    assert!(matches!(out[0].1, Outcome::WouldMove { .. }), "{out:?}");
    let seen = seen.lock().unwrap();
    let uris: Vec<_> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.uri.as_str()))
        .collect();
    assert_eq!(
        uris,
        [
            (
                "GET",
                "/apis/mailcred.io/v1alpha1/namespaces/shop/mailcredentials?&limit=100"
            ),
            (
                "GET",
                "/apis/mailcred.io/v1alpha1/namespaces/shop/mailcredentials?&limit=100&continue=page-2"
            ),
        ]
    );
}
