//! The MailCredential from the Kubernetes API: one `get` at startup (fail fast on RBAC or a
//! missing object), then a watch restricted to that one name, with the pod's ServiceAccount.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use mailcred_core::crd::MailCredential;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ResourceFeed;

/// Where the ServiceAccount token mount says which namespace the pod runs in.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("no Kubernetes configuration (in-cluster or kubeconfig): {0}")]
    Config(#[source] kube::Error),
    #[error(
        "cannot read MailCredential {namespace}/{name}: {source}; check that it exists and that the pod's ServiceAccount is listed in spec.access.serviceAccounts (the operator grants get/watch from that)"
    )]
    Get {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("the pod's namespace is unknown: pass --namespace or set POD_NAMESPACE")]
    NoNamespace,
}

pub fn pod_namespace(explicit: Option<&str>) -> Result<String, KubeSourceError> {
    if let Some(ns) = explicit {
        return Ok(ns.to_owned());
    }
    std::fs::read_to_string(NAMESPACE_FILE)
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or(KubeSourceError::NoNamespace)
}

/// Gets the named credential and keeps the feed current until shutdown.
pub async fn watch_resource(
    namespace: String,
    name: String,
    shutdown: CancellationToken,
) -> Result<ResourceFeed, KubeSourceError> {
    let client = kube::Client::try_default()
        .await
        .map_err(KubeSourceError::Config)?;
    watch_with_client(client, namespace, name, shutdown).await
}

/// [`watch_resource`] with a given client (tests use a mock API server).
pub async fn watch_with_client(
    client: kube::Client,
    namespace: String,
    name: String,
    shutdown: CancellationToken,
) -> Result<ResourceFeed, KubeSourceError> {
    let api: Api<MailCredential> = Api::namespaced(client, &namespace);
    let first = api
        .get(&name)
        .await
        .map_err(|source| KubeSourceError::Get {
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        })?;
    let (tx, rx) = watch::channel(Some(Arc::new(first)));
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let events = watcher::watcher(api, config).default_backoff().boxed();
    tokio::spawn(follow(events, shutdown, "", move |event| match event {
        Event::Apply(obj) | Event::InitApply(obj) => {
            let changed = tx
                .borrow()
                .as_ref()
                .map(|c| c.spec != obj.spec)
                .unwrap_or(true);
            if changed {
                tracing::info!(%namespace, %name, "MailCredential changed");
                let _ = tx.send(Some(Arc::new(obj)));
            }
        }
        Event::Delete(_) => {
            tracing::warn!(%namespace, %name, "MailCredential deleted; refusing new messages");
            let _ = tx.send(None);
        }
        Event::Init | Event::InitDone => {}
    }));
    Ok(rx)
}

/// Hands each event of a watch to `handle` until the stream ends or `shutdown` is cancelled.
/// Errors are logged and skipped: the watcher retries with backoff, and what was applied
/// stays. `selector` names the watch in that log line (empty for a watch by name).
pub(super) async fn follow(
    mut events: impl Stream<Item = Result<Event<MailCredential>, watcher::Error>> + Unpin,
    shutdown: CancellationToken,
    selector: &str,
    mut handle: impl FnMut(Event<MailCredential>),
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = events.next() => e,
        };
        match event {
            None => return,
            Some(Ok(event)) => handle(event),
            Some(Err(e)) => {
                tracing::warn!(error = %e, selector, "MailCredential watch error; retrying with backoff")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{Request, Response};
    use kube::client::Body;
    use mailcred_core::crd::MailCredential;
    use mailcred_core::testkit::TestCredential;
    use tokio_util::sync::CancellationToken;

    fn resource(max_recipients: u32) -> MailCredential {
        let mut r = TestCredential::new("ns", "mail").build();
        r.spec.policy.smtp.max_recipients = max_recipients;
        r.metadata.resource_version = Some(max_recipients.to_string());
        r
    }

    fn json(value: serde_json::Value) -> Response<Body> {
        Response::new(Body::from(serde_json::to_vec(&value).unwrap()))
    }

    /// Get, then list + watch restricted to the one name; a change and a deletion reach the feed.
    #[tokio::test]
    async fn get_then_watch_of_the_named_credential() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let seen_first = std::sync::Arc::new(tokio::sync::Notify::new());
        let notify = seen_first.clone();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("get");
            assert_eq!(req.method(), http::Method::GET);
            assert_eq!(
                req.uri().path(),
                "/apis/mailcred.io/v1alpha1/namespaces/ns/mailcredentials/mail"
            );
            send.send_response(json(serde_json::to_value(resource(1)).unwrap()));

            let (req, send) = handle.next_request().await.expect("list");
            let uri = req.uri().to_string();
            assert!(uri.contains("/namespaces/ns/mailcredentials?"), "{uri}");
            assert!(uri.contains("fieldSelector=metadata.name%3Dmail"), "{uri}");
            send.send_response(json(serde_json::json!({
                "apiVersion": "mailcred.io/v1alpha1", "kind": "MailCredentialList",
                "metadata": {"resourceVersion": "1"}, "items": [resource(1)],
            })));

            // One event per watch response; the second waits until the test saw the first
            // (the feed keeps the latest version only, by design).
            for (kind, obj) in [("MODIFIED", resource(7)), ("DELETED", resource(7))] {
                let (req, send) = handle.next_request().await.expect("watch");
                let uri = req.uri().to_string();
                assert!(
                    uri.contains("watch=true")
                        && uri.contains("fieldSelector=metadata.name%3Dmail"),
                    "{uri}"
                );
                if kind == "DELETED" {
                    seen_first.notified().await;
                }
                let mut event =
                    serde_json::to_vec(&serde_json::json!({"type": kind, "object": obj})).unwrap();
                event.push(b'\n');
                send.send_response(Response::new(Body::from(event)));
            }
            // Later re-watches stay unanswered; keep the handle alive.
            let _pending = handle.next_request().await;
            std::future::pending::<()>().await;
        });
        let client = kube::Client::new(service, "ns");
        let shutdown = CancellationToken::new();
        let mut feed =
            super::watch_with_client(client, "ns".into(), "mail".into(), shutdown.clone())
                .await
                .unwrap();
        assert_eq!(
            feed.borrow()
                .as_ref()
                .unwrap()
                .spec
                .policy
                .smtp
                .max_recipients,
            1
        );
        let mut seen = Vec::new();
        while seen.last() != Some(&None) {
            tokio::time::timeout(Duration::from_secs(10), feed.changed())
                .await
                .expect("feed updated")
                .unwrap();
            let v = feed
                .borrow_and_update()
                .as_ref()
                .map(|r| r.spec.policy.smtp.max_recipients);
            seen.push(v);
            notify.notify_one();
        }
        assert_eq!(seen, vec![Some(7), None]);
        shutdown.cancel();
        server.abort();
    }
}
