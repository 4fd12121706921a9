//! Mailbox names: modified UTF-7 (RFC 3501 §5.1.3) and the policy's allowed-mailbox patterns.
//!
//! Patterns are matched against the Unicode form of a name, so `Entwürfe` in a policy matches
//! `Entw&APw-rfe` on the wire. Decoding is strict (no encoded printable ASCII, no stray bits):
//! a name that two decoders could read differently is refused, never guessed at.

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

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn b64_value(c: u8) -> Option<u32> {
    B64.iter().position(|&x| x == c).map(|v| v as u32)
}

/// Strict modified UTF-7 decoding; `None` for anything RFC 3501 does not allow.
pub fn decode_mutf7(wire: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(wire.len());
    let mut i = 0;
    let mut after_encoded = false;
    while i < wire.len() {
        let c = wire[i];
        if !(0x20..=0x7e).contains(&c) {
            return None;
        }
        if c != b'&' {
            out.push(c as char);
            i += 1;
            after_encoded = false;
            continue;
        }
        let end = i + 1 + wire[i + 1..].iter().position(|&b| b == b'-')?;
        let encoded = &wire[i + 1..end];
        i = end + 1;
        if encoded.is_empty() {
            out.push('&');
            after_encoded = false;
            continue;
        }
        // Two adjacent encoded runs are a second spelling of one run.
        if after_encoded {
            return None;
        }
        after_encoded = true;
        let mut units = Vec::with_capacity(encoded.len() * 6 / 16);
        let (mut acc, mut bits) = (0u32, 0u32);
        for &b in encoded {
            acc = (acc << 6) | b64_value(b)?;
            bits += 6;
            if bits >= 16 {
                bits -= 16;
                units.push((acc >> bits) as u16);
                acc &= (1 << bits) - 1;
            }
        }
        // Leftover bits must be padding: fewer than 6 and all zero.
        if bits >= 6 || acc != 0 || units.is_empty() {
            return None;
        }
        for ch in char::decode_utf16(units.iter().copied()) {
            let ch = ch.ok()?;
            if (' '..='~').contains(&ch) {
                return None;
            }
            out.push(ch);
        }
    }
    Some(out)
}

/// Modified UTF-7 encoding (the inverse of [`decode_mutf7`]).
pub fn encode_mutf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let (mut acc, mut bits) = (0u32, 0u32);
        for &u in pending.iter() {
            acc = (acc << 16) | u32::from(u);
            bits += 16;
            while bits >= 6 {
                bits -= 6;
                out.push(B64[((acc >> bits) & 0x3f) as usize] as char);
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            out.push(B64[((acc << (6 - bits)) & 0x3f) as usize] as char);
        }
        out.push('-');
        pending.clear();
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_examples() {
        assert_eq!(
            decode_mutf7(b"~peter/mail/&U,BTFw-/&ZeVnLIqe-").as_deref(),
            Some("~peter/mail/台北/日本語")
        );
        assert_eq!(decode_mutf7(b"Entw&APw-rfe").as_deref(), Some("Entwürfe"));
        assert_eq!(
            decode_mutf7(b"Tom &- Jerry").as_deref(),
            Some("Tom & Jerry")
        );
        assert_eq!(encode_mutf7("台北"), "&U,BTFw-");
    }

    #[test]
    fn strict_decoding_refuses_ambiguity() {
        // "I" encoded: printable ASCII must not be encoded.
        assert_eq!(decode_mutf7(b"&AEk-NBOX"), None);
        assert_eq!(decode_mutf7(b"abc&U,BTFw"), None, "unterminated");
        assert_eq!(decode_mutf7(b"&U,BTF-"), None, "stray bits");
        assert_eq!(decode_mutf7(b"caf\xc3\xa9"), None, "8-bit");
        assert_eq!(decode_mutf7(b"&2D0-"), None, "lone surrogate");
        assert_eq!(decode_mutf7(b"a\tb"), None);
    }

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

    fn naive_glob(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|k| naive_glob(rest, &n[k..])),
            Some((&c, rest)) => n.first() == Some(&c) && naive_glob(rest, &n[1..]),
        }
    }

    proptest! {
        #[test]
        fn mutf7_round_trips(name in "\\PC{0,24}") {
            let wire = encode_mutf7(&name);
            prop_assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode_mutf7(wire.as_bytes()), Some(name));
        }

        #[test]
        fn decode_never_panics_and_is_canonical(wire in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Some(name) = decode_mutf7(&wire) {
                // Whatever decodes has exactly one wire form: no second spelling of a name.
                let again = encode_mutf7(&name);
                prop_assert_eq!(again.as_bytes(), &wire[..]);
            }
        }

        #[test]
        fn glob_agrees_with_reference(p in "[ab*/]{0,8}", n in "[ab/]{0,10}") {
            prop_assert_eq!(glob(p.as_bytes(), n.as_bytes()), naive_glob(p.as_bytes(), n.as_bytes()));
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
