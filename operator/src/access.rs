//! The Role and RoleBinding that let exactly the credential's ServiceAccounts read exactly that
//! MailCredential. Both are owned by the credential, so the garbage collector removes them
//! with it; there is no finalizer to get stuck.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use mailcred_core::crd::GROUP;

/// Label selecting every object the operator manages (its owned-object watches use it).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "mailcred-operator";
/// Label naming the credential an object belongs to.
pub const CREDENTIAL_LABEL: &str = "mailcred.io/credential";

/// Object names are at most 253 characters; label values at most 63.
const MAX_NAME: usize = 253;
const MAX_LABEL_VALUE: usize = 63;

/// Name of the Role and RoleBinding of credential `name`.
pub fn role_name(name: &str) -> String {
    let full = format!("mailcred-{name}");
    if full.len() <= MAX_NAME {
        return full;
    }
    // A name this long is rare; keep it unique with a digest of the full name.
    let digest = short_digest(name);
    format!("{}-{digest}", &full[..MAX_NAME - digest.len() - 1])
}

/// FNV-1a, enough to keep truncated names apart (names are not a security boundary: RBAC
/// content is what grants access).
fn short_digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:010x}", h >> 24)
}

fn labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())]);
    if name.len() <= MAX_LABEL_VALUE {
        labels.insert(CREDENTIAL_LABEL.to_string(), name.to_string());
    }
    labels
}

/// The Role granting read access to the one MailCredential `name`.
pub fn role(namespace: &str, name: &str, owner: OwnerReference) -> Role {
    Role {
        metadata: meta(namespace, name, owner),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![GROUP.to_string()]),
            resources: Some(vec!["mailcredentials".to_string()]),
            // list/watch with resourceNames only match requests that select this one name
            // (fieldSelector metadata.name=NAME), which is how the sidecar watches it.
            resource_names: Some(vec![name.to_string()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]),
    }
}

/// The RoleBinding of that Role to `service_accounts` (in the credential's namespace). An
/// empty list is applied too: it revokes every earlier grant.
pub fn role_binding(
    namespace: &str,
    name: &str,
    service_accounts: &[String],
    owner: OwnerReference,
) -> RoleBinding {
    RoleBinding {
        metadata: meta(namespace, name, owner),
        role_ref: role_ref(role_name(name)),
        subjects: Some(subjects(namespace, service_accounts)),
    }
}

/// The Role and RoleBinding of credential `name`: same name, labels and owner.
fn meta(namespace: &str, name: &str, owner: OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(role_name(name)),
        namespace: Some(namespace.to_string()),
        labels: Some(labels(name)),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    }
}

/// A reference to the Role `name` of the binding's own namespace.
pub fn role_ref(name: String) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "Role".into(),
        name,
    }
}

/// The ServiceAccounts `service_accounts` of `namespace` as RoleBinding subjects.
pub fn subjects<'a>(
    namespace: &str,
    service_accounts: impl IntoIterator<Item = &'a String>,
) -> Vec<Subject> {
    service_accounts
        .into_iter()
        .map(|sa| Subject {
            kind: "ServiceAccount".into(),
            name: sa.clone(),
            namespace: Some(namespace.to_string()),
            api_group: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_stay_within_limits_and_distinct() {
        let a = "a".repeat(253);
        let mut b = "a".repeat(252);
        b.push('b');
        assert!(role_name(&a).len() <= 253);
        assert_ne!(role_name(&a), role_name(&b));
        assert_eq!(role_name("smtp"), "mailcred-smtp");
        assert!(!labels(&a).contains_key(CREDENTIAL_LABEL));
    }
}
