//! RBAC for account sets: ONE Role + RoleBinding per (namespace, set) instead of one pair per
//! credential. A sidecar in account-set mode lists and watches its set by label selector, and
//! RBAC cannot restrict list/watch by label, so a per-name Role (access.rs) would not let it
//! watch at all; and 10,000 registered accounts would otherwise be 20,000 RBAC objects that
//! every API server holds in its authorizer cache (bench/README-operator.md has the figures).
//!
//! What the operator grants per set: get/list/watch on mailcredentials in the namespace, bound
//! to the union of the set's `spec.access.serviceAccounts`. What it never grants: create or
//! delete; those come from the chart's `accountSets` entries (charts/mailcred, with the
//! ValidatingAdmissionPolicy that confines them to the set), so the operator's own RBAC does
//! not need to hold create rights it would then hand out (RBAC escalation prevention).
//!
//! The set Role is not owned by any credential (an owner would take it down with it, and
//! 10,000 owner references do not fit an object). It stays when the set empties, bound to the
//! last ServiceAccounts; it grants reading ciphertext only, and the sidecar and KMS remain the
//! gates (docs/accounts.md, "RBAC").

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use mailcred_core::accounts::{ACCOUNT_SET_LABEL, check_set_name};
use mailcred_core::crd::{GROUP, MailCredential};
use mailcred_core::names::is_dns_subdomain;

use crate::access::{MANAGED_BY, MANAGED_BY_LABEL, role_ref, subjects};
use crate::{Error, FIELD_MANAGER, Result};

/// A RoleBinding names at most this many ServiceAccounts (bounded object size: ~100 bytes
/// each). A set shared by more is a design smell; the rest are left out and the sidecar of
/// such a pod cannot watch (it says so in its readiness).
pub const MAX_SET_SUBJECTS: usize = 256;

/// The set `obj` belongs to, when its label names a valid set. A label value that is not a
/// valid set name (uppercase, '.', '_') is not a set: the credential keeps its own Role.
pub fn set_of(obj: &MailCredential) -> Option<&str> {
    let set = obj.labels().get(ACCOUNT_SET_LABEL)?;
    check_set_name(set).ok().map(|()| set.as_str())
}

/// Name of the Role and RoleBinding of set `set`. The ':' cannot occur in a credential name
/// (a DNS subdomain), so this never collides with a per-credential `mailcred-<name>`.
pub fn set_role_name(set: &str) -> String {
    format!("mailcred-set:{set}")
}

fn labels(set: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (ACCOUNT_SET_LABEL.to_string(), set.to_string()),
    ])
}

fn meta(namespace: &str, set: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(set_role_name(set)),
        namespace: Some(namespace.to_string()),
        labels: Some(labels(set)),
        ..ObjectMeta::default()
    }
}

/// get/list/watch on every MailCredential of the namespace: list/watch cannot be narrowed to
/// a label in RBAC, and get is what `GET /v1/accounts/{name}` needs.
pub fn set_role(namespace: &str, set: &str) -> Role {
    Role {
        metadata: meta(namespace, set),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![GROUP.to_string()]),
            resources: Some(vec!["mailcredentials".to_string()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]),
    }
}

/// The binding of the set Role to `service_accounts` (sorted, at most [`MAX_SET_SUBJECTS`]).
pub fn set_binding(namespace: &str, set: &str, service_accounts: &BTreeSet<String>) -> RoleBinding {
    RoleBinding {
        metadata: meta(namespace, set),
        role_ref: role_ref(set_role_name(set)),
        subjects: Some(subjects(
            namespace,
            service_accounts.iter().take(MAX_SET_SUBJECTS),
        )),
    }
}

/// What was last applied for one set, so that 10,000 members cost two applies per resync,
/// not 20,000.
struct Applied {
    subjects: BTreeSet<String>,
    at: Instant,
}

/// The per-set RBAC state of the controller.
#[derive(Default)]
pub struct SetRoles {
    /// The controller's credential cache (attached by `controller::run`): the set's members.
    store: OnceLock<Store<MailCredential>>,
    applied: Mutex<HashMap<String, Applied>>,
}

/// What one reconcile did about its set's RBAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetOutcome {
    /// Role and RoleBinding applied (first time, subjects changed, or resync due).
    Applied { role: String, subjects: usize },
    /// Same subjects applied less than a resync ago: no request.
    Current { role: String },
}

impl SetOutcome {
    pub fn role(&self) -> &str {
        match self {
            SetOutcome::Applied { role, .. } | SetOutcome::Current { role } => role,
        }
    }
}

impl SetRoles {
    /// Uses `store` for the members of each set (without it, only the credential at hand).
    pub fn attach(&self, store: Store<MailCredential>) {
        let _ = self.store.set(store);
    }

    /// The ServiceAccounts the set's members list (the credential at hand included, so a
    /// new member is bound before the cache has seen it). Names that are not DNS subdomains
    /// are not bindable and left out, as for per-credential bindings.
    pub fn subjects(&self, namespace: &str, set: &str, own: &[String]) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = own.iter().cloned().collect();
        if let Some(store) = self.store.get() {
            for c in store.state() {
                if c.namespace().as_deref() == Some(namespace)
                    && c.labels().get(ACCOUNT_SET_LABEL).map(String::as_str) == Some(set)
                    && c.metadata.deletion_timestamp.is_none()
                {
                    out.extend(
                        c.spec
                            .access
                            .service_accounts
                            .iter()
                            .filter(|sa| is_dns_subdomain(sa))
                            .cloned(),
                    );
                }
            }
        }
        out
    }

    /// Applies the set's Role and RoleBinding unless the same subjects were applied less than
    /// `resync` ago.
    pub async fn apply(
        &self,
        client: &Client,
        namespace: &str,
        set: &str,
        own: &[String],
        resync: Duration,
    ) -> Result<SetOutcome> {
        let key = format!("{namespace}/{set}");
        let role_name = set_role_name(set);
        // Fast path, no scan of the cache: applied less than a resync ago and already naming
        // every ServiceAccount of this credential. Scanning the set on every reconcile costs
        // O(members) each, O(members²) per resync: 184 s instead of 8 s for 10,000 accounts
        // in one set (bench/README-operator.md). A ServiceAccount no member names any more is
        // therefore unbound within one resync; the sidecar refuses such accounts at once.
        let fresh = |a: &Applied| a.at.elapsed() < resync;
        {
            let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(a) = applied.get(&key)
                && fresh(a)
                && own.iter().all(|sa| a.subjects.contains(sa))
            {
                return Ok(SetOutcome::Current { role: role_name });
            }
        }
        let subjects = self.subjects(namespace, set, own);
        {
            let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(a) = applied.get(&key)
                && fresh(a)
                && a.subjects == subjects
            {
                return Ok(SetOutcome::Current { role: role_name });
            }
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        Api::<Role>::namespaced(client.clone(), namespace)
            .patch(
                &role_name,
                &params,
                &Patch::Apply(&set_role(namespace, set)),
            )
            .await
            .map_err(Error::kube(format!(
                "applying Role {namespace}/{role_name}"
            )))?;
        let binding = set_binding(namespace, set, &subjects);
        Api::<RoleBinding>::namespaced(client.clone(), namespace)
            .patch(&role_name, &params, &Patch::Apply(&binding))
            .await
            .map_err(Error::kube(format!(
                "applying RoleBinding {namespace}/{role_name}"
            )))?;
        let count = subjects.len().min(MAX_SET_SUBJECTS);
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key,
                Applied {
                    subjects,
                    at: Instant::now(),
                },
            );
        Ok(SetOutcome::Applied {
            role: role_name,
            subjects: count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::role_name;

    #[test]
    fn binding_is_bounded_and_sorted() {
        let many: BTreeSet<String> = (0..300).map(|i| format!("sa-{i:03}")).collect();
        let b = set_binding("ns", "crm", &many);
        let subjects = b.subjects.unwrap_or_default();
        assert_eq!(subjects.len(), MAX_SET_SUBJECTS);
        assert_eq!(subjects[0].name, "sa-000");
        assert_eq!(b.role_ref.name, "mailcred-set:crm");
        assert!(set_role("ns", "crm").metadata.owner_references.is_none());
    }

    proptest::proptest! {
        /// A set's Role can never take over (or be taken over by) a credential's own Role.
        #[test]
        fn set_roles_never_collide_with_credential_roles(
            set in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
            name in "[a-z0-9]([a-z0-9.-]{0,80}[a-z0-9])?",
        ) {
            proptest::prop_assert_ne!(set_role_name(&set), role_name(&name));
            proptest::prop_assert!(set_role_name(&set).len() <= 253);
        }
    }
}
