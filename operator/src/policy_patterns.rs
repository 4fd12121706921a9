//! Syntax of the policy patterns the sidecar matches against (DESIGN.md, Policy). The CRD
//! schema can only bound their length; a pattern the sidecar cannot match would silently
//! allow nothing (or, worse, be read differently by a human), so the operator rejects it
//! with the exact entry and the rule it breaks.

/// Longest address pattern accepted (RFC 5321: 64 local part + `@` + 255 domain).
const MAX_ADDRESS_LEN: usize = 320;
/// Longest mailbox pattern accepted; mailbox names are far shorter in practice.
const MAX_MAILBOX_LEN: usize = 1024;

/// Where an address pattern is used: recipients may also be the lone wildcard `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressPatternKind {
    Sender,
    Recipient,
}

/// Checks one sender or recipient pattern: `user@domain`, `*@domain`, or (recipients only) `*`.
pub fn check_address_pattern(pattern: &str, kind: AddressPatternKind) -> Result<(), String> {
    if pattern == "*" {
        return match kind {
            AddressPatternKind::Recipient => Ok(()),
            AddressPatternKind::Sender => Err(
                "a lone `*` is not allowed for senders (it would let the application send as anyone); use `*@domain`"
                    .into(),
            ),
        };
    }
    if pattern.len() > MAX_ADDRESS_LEN {
        return Err(format!("longer than {MAX_ADDRESS_LEN} bytes"));
    }
    let Some((local, domain)) = pattern.rsplit_once('@') else {
        return Err("expected `user@domain` or `*@domain`".into());
    };
    check_local_part(local)?;
    check_domain(domain)
}

fn check_local_part(local: &str) -> Result<(), String> {
    if local.is_empty() {
        return Err("the part before `@` is empty".into());
    }
    if local == "*" {
        return Ok(());
    }
    if local.contains('*') {
        return Err("`*` may only stand alone before `@` (as in `*@example.com`)".into());
    }
    if local.len() > 64 {
        return Err("the part before `@` is longer than 64 bytes".into());
    }
    if let Some(c) = local
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(*c))
    {
        return Err(format!("the part before `@` contains {c:?}"));
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("the domain after `@` is empty".into());
    }
    if domain.contains('*') {
        return Err("wildcards are not allowed in the domain (subdomains are not matched)".into());
    }
    if domain.len() > 253 {
        return Err("the domain is longer than 253 bytes".into());
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(format!("the domain {domain:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!(
                "the domain {domain:?} has a label longer than 63 bytes"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "the domain {domain:?} has a label that starts or ends with `-`"
            ));
        }
        // Non-ASCII letters are allowed: internationalized domains compare after IDNA
        // mapping in the sidecar; ASCII punctuation other than `-` never belongs in a label.
        if let Some(c) = label.chars().find(|c| !(c.is_alphanumeric() || *c == '-')) {
            return Err(format!("the domain {domain:?} contains {c:?}"));
        }
    }
    Ok(())
}

/// Checks one IMAP mailbox pattern (`*` matches any run of characters, hierarchy included).
pub fn check_mailbox_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("empty mailbox name".into());
    }
    if pattern.len() > MAX_MAILBOX_LEN {
        return Err(format!("longer than {MAX_MAILBOX_LEN} bytes"));
    }
    if let Some(c) = pattern.chars().find(|c| c.is_control()) {
        return Err(format!("contains the control character {c:?}"));
    }
    if pattern.contains('%') {
        return Err("`%` is IMAP LIST syntax, not a mailcred pattern; use `*`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressPatternKind::{Recipient, Sender};

    #[test]
    fn accepts_the_documented_forms() {
        for p in [
            "app@example.com",
            "*@example.com",
            "a.b+tag@sub.example.test",
            "x@bücher.de",
        ] {
            assert_eq!(check_address_pattern(p, Sender), Ok(()), "{p}");
            assert_eq!(check_address_pattern(p, Recipient), Ok(()), "{p}");
        }
        assert_eq!(check_address_pattern("*", Recipient), Ok(()));
        for p in ["INBOX", "Archive/*", "*", "Sent Items"] {
            assert_eq!(check_mailbox_pattern(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn rejects_with_the_reason() {
        let cases = [
            ("*", Sender, "lone `*` is not allowed for senders"),
            ("example.com", Sender, "expected `user@domain`"),
            ("@example.com", Recipient, "before `@` is empty"),
            ("app@", Recipient, "after `@` is empty"),
            ("a*b@example.com", Sender, "`*` may only stand alone"),
            (
                "app@*.example.com",
                Sender,
                "wildcards are not allowed in the domain",
            ),
            ("app@example..com", Sender, "empty label"),
            ("app@-example.com", Sender, "starts or ends with `-`"),
            ("app@exa_mple.com", Sender, "contains '_'"),
            ("a pp@example.com", Sender, "contains ' '"),
        ];
        for (pattern, kind, expected) in cases {
            let err = check_address_pattern(pattern, kind).expect_err(pattern);
            assert!(err.contains(expected), "{pattern}: {err}");
        }
        assert!(check_mailbox_pattern("").unwrap_err().contains("empty"));
        assert!(
            check_mailbox_pattern("a\rb")
                .unwrap_err()
                .contains("control")
        );
        assert!(
            check_mailbox_pattern("INBOX.%")
                .unwrap_err()
                .contains("`%`")
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(p in "\\PC{0,400}") {
            let _ = check_address_pattern(&p, Sender);
            let _ = check_address_pattern(&p, Recipient);
            let _ = check_mailbox_pattern(&p);
        }

        #[test]
        fn accepted_addresses_have_one_plain_domain(p in "[a-z*@.\\- ]{0,40}") {
            if check_address_pattern(&p, Recipient).is_ok() && p != "*" {
                let (local, domain) = p.rsplit_once('@').unwrap();
                proptest::prop_assert!(!domain.is_empty() && !domain.contains('*'));
                proptest::prop_assert!(local == "*" || !local.contains('*'));
                proptest::prop_assert!(!p.contains(' '));
            }
        }
    }
}
