//! The Kubernetes API store: get, and replace with `metadata.resourceVersion` set, which the
//! API server turns into a precondition (409 Conflict when the object moved on). RBAC:
//! get/patch... on mailcredentials only; no Secrets, no KMS (charts/mailcred, linkpage Role).

use async_trait::async_trait;
use kube::Api;
use kube::api::PostParams;
use mailcred_core::crd::MailCredential;

use super::{Store, StoreError, Stored};

pub struct KubeStore {
    client: kube::Client,
}

impl KubeStore {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    fn api(&self, namespace: &str) -> Api<MailCredential> {
        Api::namespaced(self.client.clone(), namespace)
    }
}

fn unavailable(e: kube::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[async_trait]
impl Store for KubeStore {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Stored>, StoreError> {
        let Some(resource) = self
            .api(namespace)
            .get_opt(name)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let version = resource.metadata.resource_version.clone().ok_or_else(|| {
            StoreError::Unavailable("the API server returned no resourceVersion".into())
        })?;
        Ok(Some(Stored { resource, version }))
    }

    async fn replace(&self, resource: &MailCredential, version: &str) -> Result<(), StoreError> {
        let namespace = resource.metadata.namespace.as_deref().unwrap_or_default();
        let name = resource.metadata.name.as_deref().unwrap_or_default();
        let mut update = resource.clone();
        update.metadata.resource_version = Some(version.to_owned());
        // Status is a subresource: a replace of the object leaves it to the operator.
        update.status = None;
        match self
            .api(namespace)
            .replace(name, &PostParams::default(), &update)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_conflict() => Err(StoreError::Conflict),
            Err(e) => Err(unavailable(e)),
        }
    }
}
