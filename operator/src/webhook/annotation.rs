//! The `mailcred.io/inject: <name>[,<name>...]` annotation.

use crate::validation::is_dns_subdomain;

pub const INJECT_ANNOTATION: &str = "mailcred.io/inject";
/// Set on injected pods: which credentials the sidecar serves (for humans and audits).
pub const INJECTED_ANNOTATION: &str = "mailcred.io/injected";

/// `keep`: the app containers keep the pod's ServiceAccount token and cloud identity.
pub const APP_TOKEN_ANNOTATION: &str = "mailcred.io/app-token";
pub const APP_TOKEN_KEEP: &str = "keep";

/// Who holds the pod's ServiceAccount token and cloud identity after injection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AppToken {
    /// The sidecar only: a compromised app can neither read its MailCredential nor decrypt.
    #[default]
    SidecarOnly,
    /// The app containers keep them too (`mailcred.io/app-token: keep`), and with them the
    /// means to decrypt the secret themselves.
    Keep,
}

/// The `mailcred.io/app-token` annotation; absent means [`AppToken::SidecarOnly`].
pub fn app_token(value: Option<&str>) -> Result<AppToken, String> {
    match value.map(str::trim) {
        None => Ok(AppToken::SidecarOnly),
        Some(APP_TOKEN_KEEP) => Ok(AppToken::Keep),
        // A typo must not silently take the token away from an app that asked to keep it.
        Some(other) => Err(format!(
            "annotation {APP_TOKEN_ANNOTATION}={other:?} is not understood; set it to {APP_TOKEN_KEEP:?} (the app containers keep the ServiceAccount token and cloud identity) or remove it"
        )),
    }
}

/// A pod serves at most this many credentials through one sidecar (bounded work per review).
pub const MAX_CREDENTIALS: usize = 16;

/// Credential names, in annotation order, without duplicates.
pub fn parse(value: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    if value.trim().is_empty() {
        return Err(format!(
            "annotation {INJECT_ANNOTATION} is empty; set it to a MailCredential name, or a comma-separated list of names"
        ));
    }
    for (i, raw) in value.split(',').enumerate() {
        let name = raw.trim();
        if name.is_empty() {
            return Err(format!(
                "annotation {INJECT_ANNOTATION}={value:?} has an empty entry at position {}; write names separated by single commas",
                i + 1
            ));
        }
        if !is_dns_subdomain(name) {
            return Err(format!(
                "annotation {INJECT_ANNOTATION}: {name:?} is not a valid MailCredential name (lowercase letters, digits, '-' and '.', at most 253)"
            ));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!(
                "annotation {INJECT_ANNOTATION} names MailCredential {name:?} twice; list each credential once"
            ));
        }
        names.push(name.to_string());
        if names.len() > MAX_CREDENTIALS {
            return Err(format!(
                "annotation {INJECT_ANNOTATION} names more than {MAX_CREDENTIALS} credentials; one sidecar serves at most {MAX_CREDENTIALS}"
            ));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_with_spaces() {
        assert_eq!(parse("smtp").unwrap(), ["smtp"]);
        assert_eq!(parse(" a , b.c,d-1 ").unwrap(), ["a", "b.c", "d-1"]);
    }

    #[test]
    fn rejects_with_a_reason() {
        assert!(parse("").unwrap_err().contains("is empty"));
        assert!(
            parse("a,,b")
                .unwrap_err()
                .contains("empty entry at position 2")
        );
        assert!(
            parse("a,")
                .unwrap_err()
                .contains("empty entry at position 2")
        );
        assert!(
            parse("Mail")
                .unwrap_err()
                .contains("\"Mail\" is not a valid MailCredential name")
        );
        assert!(parse("a b").unwrap_err().contains("not a valid"));
        assert!(
            parse("a,b,a")
                .unwrap_err()
                .contains("names MailCredential \"a\" twice")
        );
        let many: Vec<String> = (0..17).map(|i| format!("c{i}")).collect();
        assert!(parse(&many.join(",")).unwrap_err().contains("more than 16"));
    }

    #[test]
    fn app_token_is_keep_or_absent() {
        assert_eq!(app_token(None).unwrap(), AppToken::SidecarOnly);
        assert_eq!(app_token(Some(" keep ")).unwrap(), AppToken::Keep);
        assert!(
            app_token(Some("Keep"))
                .unwrap_err()
                .contains("mailcred.io/app-token=\"Keep\" is not understood")
        );
        assert!(app_token(Some("")).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_accepted_names_are_valid_and_unique(v in "\\PC{0,300}") {
            if let Ok(names) = parse(&v) {
                proptest::prop_assert!(!names.is_empty() && names.len() <= MAX_CREDENTIALS);
                for (i, n) in names.iter().enumerate() {
                    proptest::prop_assert!(is_dns_subdomain(n));
                    proptest::prop_assert!(!names[..i].contains(n));
                }
            }
        }

        #[test]
        fn joined_valid_names_round_trip(names in proptest::collection::btree_set("[a-z][a-z0-9-]{0,10}[a-z0-9]", 1..8)) {
            let names: Vec<String> = names.into_iter().collect();
            proptest::prop_assert_eq!(parse(&names.join(", ")).unwrap(), names);
        }
    }
}
