//! The policy's allowed-mailbox patterns, asked about names as they appear on the wire.
//!
//! Patterns are matched against the Unicode form of a name, so `Entwürfe` in a policy matches
//! `Entw&APw-rfe` on the wire (see [`crate::wire::mutf7`]).

use crate::wire::mutf7::decode_mutf7;

/// `*` matches any run of characters, hierarchy delimiters included.
#[derive(Debug, Clone)]
pub struct MailboxPatterns {
    patterns: Vec<Vec<u8>>,
}

/// A mailbox argument the proxy will not pass on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Not valid modified UTF-7 (8-bit bytes, bad base64, encoded ASCII...).
    Invalid,
}

impl MailboxPatterns {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        Self {
            patterns: patterns
                .iter()
                .map(|p| normalize_inbox(p.as_ref().as_bytes()))
                .collect(),
        }
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
            None => {
                let name = normalize_inbox(wire);
                self.patterns.iter().any(|p| glob(p, &name))
            }
        }
    }

    pub fn allows_decoded(&self, name: &str) -> bool {
        let name = normalize_inbox(name.as_bytes());
        self.patterns.iter().any(|p| glob(p, &name))
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
        let prefix = normalize_inbox(&prefix);
        self.patterns.iter().any(|p| continues_past(p, &prefix))
    }
}

/// True when some non-empty `rest` makes `prefix + rest` match `pattern`: after reading
/// `prefix`, some pattern position is still alive and can read one more character.
fn continues_past(pattern: &[u8], prefix: &[u8]) -> bool {
    // Positions in the pattern reachable after the input so far, with `*`s skipped as empty.
    let close = |states: &mut Vec<bool>| {
        for i in 0..pattern.len() {
            if states[i] && pattern[i] == b'*' {
                states[i + 1] = true;
            }
        }
    };
    let mut states = vec![false; pattern.len() + 1];
    states[0] = true;
    close(&mut states);
    for &c in prefix {
        let mut next = vec![false; pattern.len() + 1];
        for i in 0..pattern.len() {
            if states[i] && pattern[i] == b'*' {
                next[i] = true;
            } else if states[i] && pattern[i] == c {
                next[i + 1] = true;
            }
        }
        close(&mut next);
        if !next.iter().any(|&s| s) {
            return false;
        }
        states = next;
    }
    // One more character must fit: a live position before the end of the pattern.
    states[..pattern.len()].iter().any(|&s| s)
}

/// INBOX is case-insensitive (RFC 3501 §5.1), and so is it as the first hierarchy level.
fn normalize_inbox(name: &[u8]) -> Vec<u8> {
    let mut out = name.to_vec();
    if name.len() >= 5
        && name[..5].eq_ignore_ascii_case(b"INBOX")
        && (name.len() == 5 || matches!(name[5], b'/' | b'.'))
    {
        out[..5].copy_from_slice(b"INBOX");
    }
    out
}

/// Glob with `*` only; iterative, O(len(name) * len(pattern)) in the worst case.
pub fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::mutf7::encode_mutf7;
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

    fn naive_glob(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|k| naive_glob(rest, &n[k..])),
            Some((&c, rest)) => n.first() == Some(&c) && naive_glob(rest, &n[1..]),
        }
    }

    proptest! {
        #[test]
        fn glob_agrees_with_reference(p in "[ab*/]{0,8}", n in "[ab/]{0,10}") {
            prop_assert_eq!(glob(p.as_bytes(), n.as_bytes()), naive_glob(p.as_bytes(), n.as_bytes()));
        }

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

        #[test]
        fn exact_pattern_only_matches_itself(name in "[A-Za-z0-9/. ]{1,12}", other in "[A-Za-z0-9/. ]{1,12}") {
            let p = MailboxPatterns::new(&[name.as_str()]);
            let wire = encode_mutf7(&other);
            let allowed = p.check_wire(wire.as_bytes()).unwrap().is_some();
            prop_assert_eq!(allowed, normalize_inbox(name.as_bytes()) == normalize_inbox(other.as_bytes()));
        }
    }
}
