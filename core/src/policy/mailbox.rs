//! The one parser and matcher of IMAP mailbox patterns (`policy.imap.allowedMailboxes`): the
//! operator, `kubectl mailcred seal` and the IMAP proxy use it, so a pattern that is accepted
//! anywhere matches in the proxy as it reads. Names are compared in their Unicode form; the
//! proxy decodes modified UTF-7 before asking.

use std::fmt;

/// Longest pattern accepted; mailbox names are far shorter in practice.
pub const MAX_MAILBOX_PATTERN_LEN: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxPatternError {
    Empty,
    TooLong,
    Control(char),
    /// `%` is LIST syntax (one hierarchy level); a policy that used it would read differently
    /// to a human than to the proxy.
    ListWildcard,
}

impl fmt::Display for MailboxPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty mailbox name"),
            Self::TooLong => write!(f, "longer than {MAX_MAILBOX_PATTERN_LEN} bytes"),
            Self::Control(c) => write!(f, "contains the control character {c:?}"),
            Self::ListWildcard => write!(
                f,
                "`%` is IMAP LIST syntax, not a mailcred pattern; use `*`"
            ),
        }
    }
}

impl std::error::Error for MailboxPatternError {}

/// One allowed-mailbox entry; `*` matches any run of characters, hierarchy delimiters
/// included, so `Archive/*` covers every mailbox below Archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxPattern {
    bytes: Vec<u8>,
}

impl MailboxPattern {
    pub fn parse(text: &str) -> Result<Self, MailboxPatternError> {
        if text.is_empty() {
            return Err(MailboxPatternError::Empty);
        }
        if text.len() > MAX_MAILBOX_PATTERN_LEN {
            return Err(MailboxPatternError::TooLong);
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(MailboxPatternError::Control(c));
        }
        if text.contains('%') {
            return Err(MailboxPatternError::ListWildcard);
        }
        Ok(Self {
            bytes: normalize_inbox(text.as_bytes()),
        })
    }

    /// `name` in its decoded (Unicode) form, or raw bytes the proxy could not decode.
    pub fn matches(&self, name: &[u8]) -> bool {
        glob(&self.bytes, &normalize_inbox(name))
    }

    /// True when some name `prefix + rest` with a non-empty `rest` matches: the question
    /// behind LIST's `\HasChildren` (`prefix` is a parent's name and hierarchy delimiter).
    pub fn matches_below(&self, prefix: &[u8]) -> bool {
        continues_past(&self.bytes, &normalize_inbox(prefix))
    }

    /// A name this pattern allows: every `*` read as nothing.
    pub fn witness(&self) -> Vec<u8> {
        self.bytes.iter().copied().filter(|&b| b != b'*').collect()
    }
}

/// An `allowedMailboxes` entry that does not parse, with its position.
pub type MailboxListError = super::ListEntryError<MailboxPatternError>;

/// The compiled `allowedMailboxes` list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxPatterns {
    patterns: Vec<MailboxPattern>,
}

impl MailboxPatterns {
    /// Every entry must parse: a list with an entry the proxy could not match is refused whole.
    pub fn parse_all<S: AsRef<str>>(entries: &[S]) -> Result<Self, MailboxListError> {
        let patterns = super::parse_list(entries, MailboxPattern::parse)?;
        Ok(Self { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn allows(&self, name: &[u8]) -> bool {
        self.patterns.iter().any(|p| p.matches(name))
    }

    /// Some pattern allows a name below `prefix` (see [`MailboxPattern::matches_below`]).
    pub fn allows_below(&self, prefix: &[u8]) -> bool {
        self.patterns.iter().any(|p| p.matches_below(prefix))
    }

    pub fn iter(&self) -> impl Iterator<Item = &MailboxPattern> {
        self.patterns.iter()
    }
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

/// True when, after reading `prefix`, some pattern position is still alive and can read one
/// more character (positions reachable with `*`s skipped as empty).
fn continues_past(pattern: &[u8], prefix: &[u8]) -> bool {
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
    states[..pattern.len()].iter().any(|&s| s)
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
    use proptest::prelude::*;

    #[test]
    fn patterns_and_the_inbox_rule() {
        let p = MailboxPatterns::parse_all(&["INBOX", "Archive/*", "Entwürfe"]).unwrap();
        assert!(p.allows(b"inbox"));
        assert!(p.allows(b"Archive/2024"));
        assert!(!p.allows(b"Archive"));
        assert!(p.allows("Entwürfe".as_bytes()));
        assert!(!p.allows(b"Secret"));
        assert!(!p.allows(b"INBOX.Secret"));
        let sub = MailboxPatterns::parse_all(&["INBOX*"]).unwrap();
        assert!(sub.allows(b"Inbox.Lists"));
        assert!(
            MailboxPatterns::parse_all(&["*"])
                .unwrap()
                .allows(b"\xff\xfe")
        );
    }

    #[test]
    fn rejects_with_the_reason() {
        let err = |p: &str| MailboxPattern::parse(p).unwrap_err().to_string();
        assert!(err("").contains("empty"));
        assert!(err("a\rb").contains("control"));
        assert!(err("INBOX.%").contains("`%`"));
        let list = MailboxPatterns::parse_all(&["INBOX", ""]).unwrap_err();
        assert_eq!((list.index, list.error), (1, MailboxPatternError::Empty));
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

        /// Whatever the operator accepts, the proxy can match: no accepted pattern opens nothing.
        #[test]
        fn every_accepted_pattern_matches_a_mailbox(p in "\\PC{0,30}") {
            if let Ok(pattern) = MailboxPattern::parse(&p) {
                let w = pattern.witness();
                prop_assert!(pattern.matches(&w), "{p:?} matches not even {w:?}");
            }
        }

        #[test]
        fn exact_pattern_only_matches_itself(name in "[A-Za-z0-9/. ]{1,12}", other in "[A-Za-z0-9/. ]{1,12}") {
            let p = MailboxPattern::parse(&name).unwrap();
            prop_assert_eq!(
                p.matches(other.as_bytes()),
                normalize_inbox(name.as_bytes()) == normalize_inbox(other.as_bytes())
            );
        }
    }
}
