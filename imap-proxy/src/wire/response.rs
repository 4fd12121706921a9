//! Small readers and rewriters of upstream response text: response codes, capability lists,
//! LIST flags, and a printable form for logs.

pub fn strip_prefix_ci<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &text[prefix.len()..])
}

/// The list inside a `[CAPABILITY ...]` response code at the start of `text`.
pub fn capability_code(text: &[u8]) -> Option<&[u8]> {
    let rest = strip_prefix_ci(text, b"[CAPABILITY ")?;
    let end = rest.iter().position(|&c| c == b']')?;
    Some(&rest[..end])
}

/// The atom of a response code (`AUTHENTICATIONFAILED` in `[AUTHENTICATIONFAILED] ...`),
/// upper-cased, if `text` starts with one.
pub fn response_code(text: &[u8]) -> Option<String> {
    let rest = text.strip_prefix(b"[")?;
    let end = rest
        .iter()
        .position(|&c| c == b']' || c == b' ')
        .unwrap_or(rest.len());
    let atom = &rest[..end];
    (!atom.is_empty() && atom.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-'))
        .then(|| String::from_utf8_lossy(atom).to_ascii_uppercase())
}

pub fn parse_caps(list: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(list)
        .split_ascii_whitespace()
        .map(str::to_ascii_uppercase)
        .collect()
}

/// Replaces a `[CAPABILITY ...]` response code starting at `at` with the proxy's own list.
pub fn rewrite_capability_code(raw: &[u8], at: usize, caps: &str) -> Vec<u8> {
    let Some(text) = raw.get(at..) else {
        return raw.to_vec();
    };
    let Some(code) = capability_code(text) else {
        return raw.to_vec();
    };
    let after = at + "[CAPABILITY ".len() + code.len();
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..at]);
    out.extend_from_slice(b"[CAPABILITY ");
    out.extend_from_slice(caps.as_bytes());
    out.extend_from_slice(&raw[after..]);
    out
}

/// In a `* LIST (flags) ...` / `* LSUB (flags) ...` response, turns `\HasChildren` into
/// `\HasNoChildren` (RFC 3348: exactly one of them). Flags are atoms in the first
/// parenthesised list, which holds no nested list or literal.
pub fn hide_children(raw: &mut Vec<u8>) {
    let Some(open) = memchr::memchr(b'(', raw) else {
        return;
    };
    let Some(close) = memchr::memchr(b')', &raw[open..]).map(|p| open + p) else {
        return;
    };
    const HAS: &[u8] = b"\\HasChildren";
    let flags = &raw[open + 1..close];
    let at = flags.split(|&c| c == b' ').scan(open + 1, |pos, flag| {
        let here = *pos;
        *pos += flag.len() + 1;
        Some((here, flag))
    });
    let found: Vec<usize> = at
        .filter(|(_, f)| f.eq_ignore_ascii_case(HAS))
        .map(|(p, _)| p)
        .collect();
    let already_no = flags
        .split(|&c| c == b' ')
        .any(|f| f.eq_ignore_ascii_case(b"\\HasNoChildren"));
    // Right to left, so that earlier positions stay valid.
    for (i, pos) in found.into_iter().enumerate().rev() {
        if already_no || i > 0 {
            // Drop the flag and the space before it (or after it, at the list's start).
            let (from, to) = if raw[pos - 1] == b' ' {
                (pos - 1, pos + HAS.len())
            } else {
                (pos, (pos + HAS.len() + 1).min(close))
            };
            raw.drain(from..to);
        } else {
            raw.splice(pos..pos + HAS.len(), b"\\HasNoChildren".iter().copied());
        }
    }
}

/// Upstream text for logs: printable ASCII, bounded. Scrub it first when a secret was sent.
pub fn printable(text: &[u8]) -> String {
    text.iter()
        .take(200)
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_codes_are_rewritten() {
        let out = rewrite_capability_code(
            b"a1 OK [CAPABILITY IMAP4rev1 AUTH=PLAIN COMPRESS=DEFLATE] Logged in\r\n",
            6,
            "IMAP4rev1 IDLE",
        );
        assert_eq!(out, b"a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n");
        let same = rewrite_capability_code(b"* OK [READ-ONLY] x\r\n", 5, "X");
        assert_eq!(same, b"* OK [READ-ONLY] x\r\n");
    }

    #[test]
    fn has_children_becomes_has_no_children() {
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"* LIST (\\HasChildren) \"/\" Archive\r\n",
                b"* LIST (\\HasNoChildren) \"/\" Archive\r\n",
            ),
            (
                b"* LIST (\\Marked \\haschildren \\Archive) \".\" Archive\r\n",
                b"* LIST (\\Marked \\HasNoChildren \\Archive) \".\" Archive\r\n",
            ),
            (
                b"* LIST (\\HasChildren \\HasNoChildren) \"/\" X\r\n",
                b"* LIST (\\HasNoChildren) \"/\" X\r\n",
            ),
            (
                b"* LSUB () \"/\" \"(\\HasChildren)\"\r\n",
                b"* LSUB () \"/\" \"(\\HasChildren)\"\r\n",
            ),
        ];
        for (input, expected) in cases {
            let mut raw = input.to_vec();
            hide_children(&mut raw);
            assert_eq!(
                String::from_utf8_lossy(&raw),
                String::from_utf8_lossy(expected)
            );
        }
    }

    #[test]
    fn response_codes() {
        assert_eq!(
            response_code(b"[AUTHENTICATIONFAILED] nope").as_deref(),
            Some("AUTHENTICATIONFAILED")
        );
        assert_eq!(
            response_code(b"[ALERT] you sent x").as_deref(),
            Some("ALERT")
        );
        assert_eq!(response_code(b"no code"), None);
        assert_eq!(response_code(b"[\"x\"]"), None);
    }
}
