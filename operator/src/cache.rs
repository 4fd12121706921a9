//! The watch of MailCredentials that feeds a cache (the controller's and the webhook's).
//! Objects are trimmed of what neither reads: managedFields, and the kubectl last-applied
//! annotation (a second copy of the whole spec). That roughly halves the memory per cached
//! credential for objects applied with kubectl.

use futures::Stream;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use mailcred_core::crd::MailCredential;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Removes the fields no part of the operator reads.
pub fn trim(credential: &mut MailCredential) {
    credential.managed_fields_mut().clear();
    credential.annotations_mut().remove(LAST_APPLIED);
}

/// Watches every MailCredential (any namespace) into `writer`; yields each applied object.
pub fn credentials(
    client: Client,
    writer: Writer<MailCredential>,
) -> impl Stream<Item = Result<MailCredential, watcher::Error>> + Send + 'static {
    watcher(
        Api::<MailCredential>::all(client),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(trim)
    .reflect(writer)
    .applied_objects()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    #[test]
    fn trim_drops_only_what_nobody_reads() {
        let mut c: MailCredential = serde_json::from_value(serde_json::json!({
            "apiVersion": "mailcred.io/v1alpha1", "kind": "MailCredential",
            "metadata": {"name": "a", "namespace": "n", "annotations": {LAST_APPLIED: "{...}", "keep": "me"}},
            "spec": {"username": "u", "sealedSecret": {"version": 1, "kms": {"provider": "local", "keyId": "k"}, "encryptedDataKey": "a", "nonce": "b", "ciphertext": "c"}, "access": {"serviceAccounts": ["x"]}}
        }))
        .unwrap();
        c.managed_fields_mut().push(ManagedFieldsEntry::default());
        let spec = c.spec.clone();
        trim(&mut c);
        assert!(c.managed_fields().is_empty());
        assert_eq!(c.annotations().len(), 1);
        assert_eq!(c.annotations()["keep"], "me");
        assert_eq!(c.spec, spec);
    }
}
