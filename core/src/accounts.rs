//! Account sets: one sidecar serving every MailCredential of its namespace that carries the
//! set's label, the application picking one per connection (SMTP AUTH / IMAP LOGIN with the
//! account's name and the app's local token), and registering new ones through the sidecar's
//! registration API (docs/accounts.md). The names and rules both sides use live here.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::MailCredential;
use crate::credential::CredentialSource;
use crate::names;

/// Label that puts a MailCredential into an account set; its value is the set's name.
pub const ACCOUNT_SET_LABEL: &str = "mailcred.io/account-set";
/// Label the registration API puts on what it creates: the ServiceAccount of the pod that
/// registered the account (who owns it, for `GET /v1/accounts` and the admission policy).
pub const REGISTERED_BY_LABEL: &str = "mailcred.io/registered-by";
/// Pod annotation that opts a pod into an account set (the webhook injects the sidecar in
/// account-set mode); its value is the set's name.
pub const ACCOUNT_SET_ANNOTATION: &str = "mailcred.io/account-set";

/// The label selector of set `set` (what the sidecar lists and watches).
pub fn label_selector(set: &str) -> String {
    format!("{ACCOUNT_SET_LABEL}={set}")
}

/// Why `set` cannot name an account set: it must be a valid label value and a DNS-1123 label
/// (it becomes part of Role names), so at most 63 lowercase letters, digits and '-'.
pub fn check_set_name(set: &str) -> Result<(), String> {
    if names::is_dns_label(set) {
        Ok(())
    } else {
        Err(format!(
            "account set {set:?} is not a valid name: use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// Whether `resource`'s lifetime (`spec.expiresAt`) has ended at `now`.
pub fn expired_at(resource: &MailCredential, now: &Time) -> bool {
    resource
        .spec
        .expires_at
        .as_ref()
        .is_some_and(|end| end <= now)
}

/// The accounts a sidecar in account-set mode may serve, looked up per connection.
pub trait AccountDirectory: Send + Sync {
    /// The credential source of account `name` (a MailCredential name), if this pod may use it
    /// now. `None` for an unknown account, one whose access list does not name the pod's
    /// ServiceAccount, and one whose lifetime ended: front-ends answer all three exactly as
    /// they answer a wrong token, so accounts cannot be probed.
    fn account(&self, name: &str) -> Option<Arc<dyn CredentialSource>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TestCredential;

    #[test]
    fn set_names_are_dns_labels() {
        assert!(check_set_name("crm").is_ok());
        assert!(check_set_name("help-desk-2").is_ok());
        for bad in ["", "CRM", "crm.", "a_b", "-a", &"a".repeat(64)] {
            let e = check_set_name(bad).unwrap_err();
            assert!(e.contains("not a valid name"), "{e}");
        }
        assert_eq!(label_selector("crm"), "mailcred.io/account-set=crm");
    }

    #[test]
    fn lifetime_ends_at_expires_at() {
        let mut r = TestCredential::new("ns", "a").build();
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
        assert!(!expired_at(&r, &now), "no lifetime: never expires");
        r.spec.expires_at = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_001).unwrap(),
        ));
        assert!(!expired_at(&r, &now));
        r.spec.expires_at = Some(now.clone());
        assert!(expired_at(&r, &now), "the end instant itself is expired");
    }
}
