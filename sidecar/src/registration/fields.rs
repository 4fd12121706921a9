//! Which JSON fields a registration may carry, checked before anything is deserialized: an
//! unknown field is refused by its full path (`policy.smtp.allowedSender`), a typo never
//! silently becomes a default. The policy's keys are the CRD's (camelCase).

use serde_json::{Map, Value};

use super::errors::{ApiError, Code};

/// One object's allowed keys, and the schema of those that are objects themselves.
struct Schema {
    keys: &'static [&'static str],
    nested: &'static [(&'static str, &'static Schema)],
}

const ENDPOINT: Schema = Schema {
    keys: &["host", "port", "tls", "caPem"],
    nested: &[],
};
const RATE_LIMITS: Schema = Schema {
    keys: &[
        "messagesPerMinute",
        "messagesPerHour",
        "recipientsPerMinute",
        "recipientsPerHour",
    ],
    nested: &[],
};
const SMTP_POLICY: Schema = Schema {
    keys: &[
        "enabled",
        "allowedSenders",
        "allowedRecipients",
        "maxRecipients",
        "maxMessageBytes",
        "rateLimits",
    ],
    nested: &[("rateLimits", &RATE_LIMITS)],
};
const IMAP_POLICY: Schema = Schema {
    keys: &["enabled", "readOnly", "seenOnly", "allowedMailboxes"],
    nested: &[],
};
const POLICY: Schema = Schema {
    keys: &["smtp", "imap"],
    nested: &[("smtp", &SMTP_POLICY), ("imap", &IMAP_POLICY)],
};
const ROOT: Schema = Schema {
    keys: &[
        "name",
        "username",
        "password",
        "smtp",
        "imap",
        "policy",
        "lifetimeSeconds",
    ],
    nested: &[
        ("smtp", &ENDPOINT),
        ("imap", &ENDPOINT),
        ("policy", &POLICY),
    ],
};

/// Refuses the first key (in document order) that the request schema does not know, and any
/// nested value that should be an object but is not.
pub fn check_known(root: &Map<String, Value>) -> Result<(), ApiError> {
    walk(root, &ROOT, "")
}

fn walk(object: &Map<String, Value>, schema: &Schema, prefix: &str) -> Result<(), ApiError> {
    for (key, value) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if !schema.keys.contains(&key.as_str()) {
            return Err(ApiError::new(
                Code::UnknownField,
                format!("unknown field {:?}", printable(&path)),
                format!("remove it; the fields here are: {}", schema.keys.join(", ")),
            )
            .at(printable(&path)));
        }
        if let Some((_, inner)) = schema.nested.iter().find(|(k, _)| k == key) {
            match value {
                Value::Object(map) => walk(map, inner, &path)?,
                Value::Null => {}
                _ => {
                    return Err(ApiError::new(
                        Code::InvalidField,
                        format!("{path} must be a JSON object"),
                        "give an object (see docs/registration-api.yaml)",
                    )
                    .at(path));
                }
            }
        }
    }
    Ok(())
}

/// A client's key, bounded and without control characters, fit to echo in an error.
fn printable(key: &str) -> String {
    key.chars()
        .take(128)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<(), ApiError> {
        check_known(v.as_object().unwrap())
    }

    #[test]
    fn unknown_keys_are_named_by_path() {
        assert!(check(json!({"username": "u", "smtp": {"host": "h"}})).is_ok());
        let e = check(json!({"usernme": "u"})).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (Code::UnknownField, Some("usernme"))
        );
        let e = check(json!({"policy": {"smtp": {"allowedSender": []}}})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("policy.smtp.allowedSender"));
        let e = check(json!({"smtp": {"insecure": true}})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("smtp.insecure"));
        let e = check(json!({"imap": "x"})).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (Code::InvalidField, Some("imap"))
        );
    }
}
