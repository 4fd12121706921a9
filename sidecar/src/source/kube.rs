//! The MailCredential from the Kubernetes API: one `get` at startup (fail fast on RBAC or a
//! missing object), then a watch restricted to that one name, with the pod's ServiceAccount.

use std::sync::Arc;

use futures::StreamExt;
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
    tokio::spawn(async move {
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = events.next() => e,
            };
            match event {
                None => return,
                Some(Ok(Event::Apply(obj) | Event::InitApply(obj))) => {
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
                Some(Ok(Event::Delete(_))) => {
                    tracing::warn!(%namespace, %name, "MailCredential deleted; refusing new messages");
                    let _ = tx.send(None);
                }
                Some(Ok(Event::Init | Event::InitDone)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "MailCredential watch error; retrying with backoff")
                }
            }
        }
    });
    Ok(rx)
}
