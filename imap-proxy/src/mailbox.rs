//! The policy's allowed-mailbox patterns (`mailcred_core::policy::mailbox`, the one parser
//! and matcher), asked about names as they appear on the wire.
//!
//! Patterns are matched against the Unicode form of a name, so `Entwürfe` in a policy matches
//! `Entw&APw-rfe` on the wire (see [`crate::wire::mutf7`]).

use mailcred_core::policy::mailbox::MailboxPatterns as Patterns;

use crate::wire::mutf7::decode_mutf7;

/// `*` matches any run of characters, hierarchy delimiters included.
#[derive(Debug, Clone)]
pub struct MailboxPatterns {
    patterns: Patterns,
}

/// A mailbox argument the proxy will not pass on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Not valid modified UTF-7 (8-bit bytes, bad base64, encoded ASCII...).
    Invalid,
}

impl MailboxPatterns {
    /// A list with an entry that does not parse allows nothing (the operator reports the
    /// entry; the proxy fails closed rather than guess what it meant).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let patterns = Patterns::parse_all(patterns).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "policy.imap.allowedMailboxes has an entry the proxy cannot match; no mailbox is allowed until it is fixed");
            Patterns::default()
        });
        Self { patterns }
    }

    /// Checks a mailbox name as an application sent it (modified UTF-7 on the wire).
    /// Returns the decoded name when allowed, `Ok(None)` when valid but not allowed.
    pub fn check_wire(&self, wire: &[u8]) -> Result<Option<String>, NameError> {
        let decoded = decode_mutf7(wire).ok_or(NameError::Invalid)?;
        Ok(self.allows_decoded(&decoded).then_some(decoded))
    }

    /// For names upstream reports (LIST, STATUS): invalid encodings are matched as raw bytes,
    /// which can only hide a mailbox, never reveal one a pattern does not cover.
    pub fn allows_wire_lenient(&self, wire: &[u8]) -> bool {
        match decode_mutf7(wire) {
            Some(decoded) => self.allows_decoded(&decoded),
            None => self.patterns.allows(wire),
        }
    }

    pub fn allows_decoded(&self, name: &str) -> bool {
        self.patterns.allows(name.as_bytes())
    }

    /// Could the policy allow a mailbox below `parent` (a name as upstream reports it, with
    /// its hierarchy `delimiter`)? False means every child is hidden, so LIST must not say
    /// `\HasChildren`. An undecodable parent has no visible children.
    pub fn may_allow_children(&self, parent: &[u8], delimiter: u8) -> bool {
        let Some(decoded) = decode_mutf7(parent) else {
            return false;
        };
        let mut prefix = decoded.into_bytes();
        prefix.push(delimiter);
        self.patterns.allows_below(&prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn patterns() {
        let p = MailboxPatterns::new(&["INBOX", "Archive/*", "Entwürfe"]);
        assert_eq!(p.check_wire(b"inbox"), Ok(Some("inbox".into())));
        assert_eq!(
            p.check_wire(b"Archive/2024"),
            Ok(Some("Archive/2024".into()))
        );
        assert_eq!(p.check_wire(b"Archive"), Ok(None));
        assert_eq!(p.check_wire(b"Entw&APw-rfe"), Ok(Some("Entwürfe".into())));
        assert_eq!(p.check_wire(b"Secret"), Ok(None));
        assert_eq!(p.check_wire(b"INBOX.Secret"), Ok(None));
        assert_eq!(p.check_wire(b"&AEk-NBOX"), Err(NameError::Invalid));
        assert!(!p.allows_wire_lenient(b"Entw\xfcrfe"));
        let all = MailboxPatterns::new(&["*"]);
        assert!(all.allows_wire_lenient(b"\xff\xfe"));
        let sub = MailboxPatterns::new(&["INBOX*"]);
        assert!(sub.allows_decoded("Inbox.Lists"));
    }

    #[test]
    fn children_the_policy_could_allow() {
        let p = MailboxPatterns::new(&["INBOX", "Archive/*", "*/Sent", "Lists/rust"]);
        assert!(p.may_allow_children(b"Archive", b'/'));
        assert!(
            p.may_allow_children(b"Anything", b'/'),
            "*/Sent allows Anything/Sent"
        );
        assert!(p.may_allow_children(b"Lists", b'/'));
        assert!(
            p.may_allow_children(b"Lists", b'.'),
            "*/Sent allows Lists.x/Sent"
        );
        let exact = MailboxPatterns::new(&["Lists/rust"]);
        assert!(exact.may_allow_children(b"Lists", b'/'));
        assert!(!exact.may_allow_children(b"Lists", b'.'));
        assert!(!exact.may_allow_children(b"Lists/rust", b'/'));
        let inbox_only = MailboxPatterns::new(&["INBOX", "Archive"]);
        assert!(!inbox_only.may_allow_children(b"INBOX", b'/'));
        assert!(!inbox_only.may_allow_children(b"Archive", b'/'));
        let inbox_tree = MailboxPatterns::new(&["INBOX.*"]);
        assert!(inbox_tree.may_allow_children(b"inbox", b'.'));
        assert!(!inbox_tree.may_allow_children(b"&AEk-NBOX", b'.'));
    }

    proptest! {
        /// `may_allow_children` says yes exactly when some child name is allowed.
        #[test]
        fn children_agree_with_matching(p in "[ab*/]{0,6}", parent in "[ab]{1,3}", rest in "[ab/]{1,4}") {
            let patterns = MailboxPatterns::new(&[p.as_str()]);
            let child = format!("{parent}/{rest}");
            if patterns.allows_decoded(&child) {
                prop_assert!(patterns.may_allow_children(parent.as_bytes(), b'/'));
            }
            // Conversely, a yes has a witness: the pattern's own continuation, stars as "a".
            if patterns.may_allow_children(parent.as_bytes(), b'/') {
                let found = (1..=6).any(|len| {
                    (0..(3u32.pow(len as u32))).any(|mut k| {
                        let mut tail = String::new();
                        for _ in 0..len {
                            tail.push(['a', 'b', '/'][(k % 3) as usize]);
                            k /= 3;
                        }
                        patterns.allows_decoded(&format!("{parent}/{tail}"))
                    })
                });
                prop_assert!(found, "{p:?} {parent:?}");
            }
        }

    }
}
