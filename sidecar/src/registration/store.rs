//! Where registered accounts live: MailCredentials in the pod's namespace. Behind a trait so
//! the API can be tested without an API server; [`KubeStore`] is the real one.

use async_trait::async_trait;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::{Api, Client};
use mailcred_core::crd::MailCredential;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a MailCredential of that name exists already")]
    AlreadyExists,
    /// The API server could not be reached or did not answer in time.
    #[error("the Kubernetes API is unavailable: {0}")]
    Unavailable(String),
    /// The API server answered and refused (forbidden, invalid, admission policy).
    #[error("the Kubernetes API refused: {0}")]
    Refused(String),
}

/// One page of accounts, and whether the set holds more than the page.
pub struct Listed {
    pub items: Vec<MailCredential>,
    pub truncated: bool,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates `resource` (namespace and name set); [`StoreError::AlreadyExists`] when taken.
    async fn create(&self, resource: &MailCredential) -> Result<MailCredential, StoreError>;
    /// The MailCredentials matching `selector`, at most `limit`.
    async fn list(&self, selector: &str, limit: u32) -> Result<Listed, StoreError>;
    async fn get(&self, name: &str) -> Result<Option<MailCredential>, StoreError>;
    /// Deletes `name` if it is still the object with `uid` (what was looked at before).
    /// `false` when it is gone already.
    async fn delete(&self, name: &str, uid: Option<&str>) -> Result<bool, StoreError>;
}

/// MailCredentials of one namespace through the API server.
pub struct KubeStore {
    api: Api<MailCredential>,
}

impl KubeStore {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
        }
    }
}

fn classify(e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(status) if status.code == 409 => StoreError::AlreadyExists,
        kube::Error::Api(status) if status.code >= 500 || status.code == 429 => {
            StoreError::Unavailable(format!("{} ({})", status.message, status.code))
        }
        kube::Error::Api(status) => {
            StoreError::Refused(format!("{} ({})", status.message, status.code))
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl AccountStore for KubeStore {
    async fn create(&self, resource: &MailCredential) -> Result<MailCredential, StoreError> {
        self.api
            .create(&PostParams::default(), resource)
            .await
            .map_err(classify)
    }

    async fn list(&self, selector: &str, limit: u32) -> Result<Listed, StoreError> {
        let params = ListParams::default().labels(selector).limit(limit);
        let list = self.api.list(&params).await.map_err(classify)?;
        let truncated = list
            .metadata
            .continue_
            .as_deref()
            .is_some_and(|c| !c.is_empty());
        Ok(Listed {
            items: list.items,
            truncated,
        })
    }

    async fn get(&self, name: &str) -> Result<Option<MailCredential>, StoreError> {
        self.api.get_opt(name).await.map_err(classify)
    }

    async fn delete(&self, name: &str, uid: Option<&str>) -> Result<bool, StoreError> {
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(name, &params).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(e) => Err(classify(e)),
        }
    }
}
