//! What `GET /v1/accounts` shows of an account: name, username, endpoints, status, last use,
//! lifetime. Never the sealed secret, the policy or the access list.

use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mailcred_core::accounts::{ACCOUNT_SET_LABEL, expired_at};
use mailcred_core::crd::{MailCredential, SecretState, UpstreamEndpoint};
use serde_json::{Map, Value, json};

/// Whether `resource` belongs to account set `set` (its label says so).
pub fn in_set(resource: &MailCredential, set: &str) -> bool {
    resource
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ACCOUNT_SET_LABEL))
        .is_some_and(|v| v == set)
}

/// Whether this pod may see `resource` through the API: in its set AND naming its
/// ServiceAccount, the same accounts SMTP AUTH and IMAP LOGIN accept (an account of the set
/// for another ServiceAccount is as absent here as it is there).
pub fn visible(resource: &MailCredential, set: &str, service_account: &str) -> bool {
    in_set(resource, set)
        && resource
            .spec
            .access
            .service_accounts
            .iter()
            .any(|sa| sa == service_account)
}

/// `ready` (the sidecar can use it), `expired` (its lifetime ended) or `invalid` (no sealed
/// secret, or the operator found it unusable).
pub fn status(resource: &MailCredential, now: &Time) -> &'static str {
    if expired_at(resource, now) {
        return "expired";
    }
    let invalid = resource.spec.sealed_secret.is_none()
        || resource
            .status
            .as_ref()
            .is_some_and(|s| s.secret == Some(SecretState::Invalid));
    if invalid { "invalid" } else { "ready" }
}

fn endpoint(e: &UpstreamEndpoint) -> Value {
    json!({"host": e.host, "port": e.port, "tls": e.tls.as_str()})
}

pub fn account(resource: &MailCredential, now: &Time, last_used: Option<SystemTime>) -> Value {
    let mut out = Map::new();
    out.insert(
        "name".into(),
        json!(resource.metadata.name.clone().unwrap_or_default()),
    );
    out.insert("username".into(), json!(resource.spec.username));
    if let Some(e) = &resource.spec.smtp {
        out.insert("smtp".into(), endpoint(e));
    }
    if let Some(e) = &resource.spec.imap {
        out.insert("imap".into(), endpoint(e));
    }
    out.insert("status".into(), json!(status(resource, now)));
    if let Some(at) = last_used.and_then(|t| k8s_openapi::jiff::Timestamp::try_from(t).ok()) {
        out.insert("lastUsed".into(), json!(at.to_string()));
    }
    if let Some(end) = &resource.spec.expires_at {
        out.insert("expiresAt".into(), json!(end.0.to_string()));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailcred_core::testkit::TestCredential;

    #[test]
    fn the_view_shows_no_secret_and_the_status_follows_the_lifetime() {
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
        let mut r = TestCredential::new("ns", "a").account_set("crm").build();
        assert!(in_set(&r, "crm") && !in_set(&r, "other"));
        let v = account(&r, &now, Some(SystemTime::UNIX_EPOCH));
        assert_eq!(v["status"], "ready");
        assert_eq!(v["lastUsed"], "1970-01-01T00:00:00Z");
        let text = v.to_string();
        for secret in ["ciphertext", "sealedSecret", "policy", "access", "nonce"] {
            assert!(!text.contains(secret), "{text}");
        }
        r.spec.expires_at = Some(now.clone());
        assert_eq!(account(&r, &now, None)["status"], "expired");
        r.spec.expires_at = None;
        r.spec.sealed_secret = None;
        assert_eq!(status(&r, &now), "invalid");
    }

    #[test]
    fn only_accounts_naming_the_pods_service_account_are_visible() {
        let mine = TestCredential::new("ns", "a")
            .account_set("crm")
            .service_accounts(&["web"])
            .build();
        let foreign = TestCredential::new("ns", "b")
            .account_set("crm")
            .service_accounts(&["other"])
            .build();
        assert!(visible(&mine, "crm", "web"));
        assert!(
            !visible(&foreign, "crm", "web"),
            "another ServiceAccount's account"
        );
        assert!(!visible(&mine, "other-set", "web"), "another set");
    }
}
