//! The account set from the Kubernetes API: ONE list+watch of the namespace's
//! MailCredentials by label selector `mailcred.io/account-set=<set>` (not a watch per name).
//! The first list must succeed before the sidecar starts (no RBAC, no CRD: fail fast); later
//! errors retry with backoff and the set keeps what it had.

use std::sync::Arc;

use futures::StreamExt;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use mailcred_core::accounts::label_selector;
use mailcred_core::crd::MailCredential;
use tokio_util::sync::CancellationToken;

use super::AccountSet;

#[derive(Debug, thiserror::Error)]
pub enum AccountWatchError {
    #[error("no Kubernetes configuration (in-cluster or kubeconfig): {0}")]
    Config(#[source] kube::Error),
    #[error(
        "cannot list MailCredentials with label {selector} in namespace {namespace}: {source}; check that the sidecar's ServiceAccount may list and watch mailcredentials there (the chart grants it when account sets are enabled)"
    )]
    List {
        namespace: String,
        selector: String,
        source: watcher::Error,
    },
    #[error("the MailCredential watch of namespace {namespace} ended before its first list")]
    Ended { namespace: String },
}

/// Lists the set with `client` (in-cluster, or a mock API server in tests) and returns once
/// the first list is applied; the watch goes on in a task until shutdown.
pub async fn watch_set_with_client(
    client: kube::Client,
    set: Arc<AccountSet>,
    shutdown: CancellationToken,
) -> Result<(), AccountWatchError> {
    let namespace = set.config().namespace.clone();
    let selector = label_selector(&set.config().set);
    let api: Api<MailCredential> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(&selector);
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut relist = Relist::default();
    // The first list, in the foreground.
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            e = events.next() => e,
        };
        match event {
            None => return Err(AccountWatchError::Ended { namespace }),
            Some(Err(source)) => {
                return Err(AccountWatchError::List {
                    namespace,
                    selector,
                    source,
                });
            }
            Some(Ok(event)) => {
                if relist.handle(&set, event) {
                    break;
                }
            }
        }
    }
    tracing::info!(%namespace, %selector, accounts = set.len(), "account set listed");
    tokio::spawn(async move {
        crate::source::kube::follow(events, shutdown, &selector, |event| {
            relist.handle(&set, event);
        })
        .await
    });
    Ok(())
}

/// Collects a (re-)list: the accounts it does not name are gone when it is done.
#[derive(Default)]
struct Relist {
    pending: Option<Vec<MailCredential>>,
}

impl Relist {
    /// Applies `event`; true when a full list was just applied.
    fn handle(&mut self, set: &AccountSet, event: Event<MailCredential>) -> bool {
        match event {
            Event::Init => self.pending = Some(Vec::new()),
            Event::InitApply(obj) => match &mut self.pending {
                Some(list) => list.push(obj),
                None => set.apply(obj),
            },
            Event::InitDone => {
                set.replace_all(self.pending.take().unwrap_or_default());
                return true;
            }
            Event::Apply(obj) => set.apply(obj),
            Event::Delete(obj) => {
                if let Some(name) = obj.metadata.name.as_deref() {
                    set.remove(name);
                }
            }
        }
        false
    }
}
