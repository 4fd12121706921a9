//! Kubernetes name rules (RFC 1123), in one place for the plugin's pre-prompt checks and the
//! operator's validation and webhook: a name one accepts, the other must accept too.

/// A DNS-1123 label: what a namespace name must be (and each part of a subdomain).
pub fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: what object names (MailCredential, ServiceAccount) must be.
pub fn is_dns_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len()) && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        for ok in ["a", "a-b", "0abc", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("a.b-c.d"));
        for bad in ["", "a..b", ".a", "a.", "A.b", "a b"] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long.len(), 253);
        assert!(is_dns_subdomain(&long));
        assert!(!is_dns_subdomain(&format!("{long}e")));
    }
}
