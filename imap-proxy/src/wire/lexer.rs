//! A small IMAP tokenizer for what the policy needs to see: atoms, strings (quoted or
//! literal), parenthesised lists and the literal announcement that may end a line. It checks
//! balance and quoting; it does not interpret command arguments (upstream does that).
//!
//! Text is fed one line segment at a time; literals are fed between segments.

/// One top-level argument, or a member of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Atom(Vec<u8>),
    /// A quoted string (unescaped) or a literal's bytes.
    Str(Vec<u8>),
    List(Vec<Item>),
}

impl Item {
    /// The bytes of an atom or string (an `astring`); `None` for a list.
    pub fn astring(&self) -> Option<&[u8]> {
        match self {
            Item::Atom(a) => Some(a),
            Item::Str(s) => Some(s),
            Item::List(_) => None,
        }
    }
}

/// A `{n}` or `{n+}` at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiteralMarker {
    pub len: u64,
    /// `{n}`: the sender waits for a continuation request.
    pub synchronizing: bool,
    /// Byte offset of the `{` in the segment.
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxError {
    UnbalancedQuote,
    UnbalancedParens,
    BadEscape,
    BadLiteral,
    TooDeep,
    Control,
}

impl SyntaxError {
    pub fn message(&self) -> &'static str {
        match self {
            SyntaxError::UnbalancedQuote => "unterminated quoted string",
            SyntaxError::UnbalancedParens => "unbalanced parentheses",
            SyntaxError::BadEscape => "invalid escape in quoted string",
            SyntaxError::BadLiteral => "invalid literal announcement",
            SyntaxError::TooDeep => "lists nested too deeply",
            SyntaxError::Control => "control character in command",
        }
    }
}

/// Nesting bound: nothing legitimate comes close, and it keeps the stack bounded.
pub const MAX_DEPTH: usize = 32;
/// Digits in a literal length: 20 covers u64, anything longer is refused unread.
const MAX_LITERAL_DIGITS: usize = 20;

#[derive(Debug, Default)]
pub struct Lexer {
    /// Open lists; the top-level items are `stack[0]`.
    stack: Vec<Vec<Item>>,
}

impl Lexer {
    pub fn new() -> Self {
        Self {
            stack: vec![Vec::new()],
        }
    }

    /// Number of complete top-level items so far.
    pub fn top_len(&self) -> usize {
        self.stack[0].len()
    }

    pub fn depth(&self) -> usize {
        self.stack.len() - 1
    }

    pub fn top(&self) -> &[Item] {
        &self.stack[0]
    }

    fn push(&mut self, item: Item) {
        if let Some(last) = self.stack.last_mut() {
            last.push(item);
        }
    }

    /// Tokenizes one line segment (no CRLF). Returns the literal announced at its end, if any.
    pub fn feed_line(&mut self, text: &[u8]) -> Result<Option<LiteralMarker>, SyntaxError> {
        let mut i = 0;
        while i < text.len() {
            match text[i] {
                b' ' => i += 1,
                b'(' => {
                    if self.stack.len() > MAX_DEPTH {
                        return Err(SyntaxError::TooDeep);
                    }
                    self.stack.push(Vec::new());
                    i += 1;
                }
                b')' => {
                    if self.stack.len() < 2 {
                        return Err(SyntaxError::UnbalancedParens);
                    }
                    let list = self.stack.pop().unwrap_or_default();
                    self.push(Item::List(list));
                    i += 1;
                }
                b'"' => {
                    let (s, next) = quoted(text, i + 1)?;
                    self.push(Item::Str(s));
                    i = next;
                }
                b'{' => {
                    let marker = literal_marker(text, i)?;
                    return Ok(Some(marker));
                }
                c if c < 0x20 || c == 0x7f => return Err(SyntaxError::Control),
                _ => {
                    let start = i;
                    while i < text.len() && !is_atom_end(text[i]) {
                        i += 1;
                    }
                    self.push(Item::Atom(text[start..i].to_vec()));
                }
            }
        }
        Ok(None)
    }

    /// Adds a literal's bytes as the next item.
    pub fn feed_literal(&mut self, data: Vec<u8>) {
        self.push(Item::Str(data));
    }

    /// The top-level items, once every list is closed.
    pub fn finish(mut self) -> Result<Vec<Item>, SyntaxError> {
        if self.stack.len() != 1 {
            return Err(SyntaxError::UnbalancedParens);
        }
        Ok(self.stack.pop().unwrap_or_default())
    }
}

fn is_atom_end(c: u8) -> bool {
    matches!(c, b' ' | b'(' | b')' | b'"' | b'{') || c < 0x20 || c == 0x7f
}

fn quoted(text: &[u8], mut i: usize) -> Result<(Vec<u8>, usize), SyntaxError> {
    let mut out = Vec::new();
    while i < text.len() {
        match text[i] {
            b'"' => return Ok((out, i + 1)),
            b'\\' => {
                match text.get(i + 1) {
                    Some(&c @ (b'"' | b'\\')) => out.push(c),
                    Some(_) => return Err(SyntaxError::BadEscape),
                    None => return Err(SyntaxError::UnbalancedQuote),
                }
                i += 2;
            }
            0 => return Err(SyntaxError::Control),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(SyntaxError::UnbalancedQuote)
}

/// Parses `{digits}` or `{digits+}` at `start`, which must end the segment.
fn literal_marker(text: &[u8], start: usize) -> Result<LiteralMarker, SyntaxError> {
    let body = &text[start + 1..];
    let close = body
        .iter()
        .position(|&c| c == b'}')
        .ok_or(SyntaxError::BadLiteral)?;
    if start + 1 + close + 1 != text.len() {
        return Err(SyntaxError::BadLiteral);
    }
    let (digits, synchronizing) = match body[..close].strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (&body[..close], true),
    };
    if digits.is_empty()
        || digits.len() > MAX_LITERAL_DIGITS
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return Err(SyntaxError::BadLiteral);
    }
    // More than 20 digits is refused above; a 20-digit value may still overflow u64.
    let len = digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    Ok(LiteralMarker {
        len: len.unwrap_or(u64::MAX),
        synchronizing,
        offset: start,
    })
}

/// The literal announced at the end of a response line, if any (`{n}` just before CRLF).
/// Used on the pass-through path, which never tokenizes the line.
pub fn trailing_literal(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&c| c == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty()
        || digits.len() > MAX_LITERAL_DIGITS
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Is `tag` a valid IMAP tag (1*<ASTRING-CHAR except "+">)?
pub fn is_valid_tag(tag: &[u8]) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG_BYTES
        && tag.iter().all(|&c| {
            (0x21..0x7f).contains(&c)
                && !matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        })
}

/// Tags longer than this are refused: they are kept per pending command.
pub const MAX_TAG_BYTES: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item() -> impl Strategy<Value = Item> {
        let leaf = prop_oneof![
            "[A-Za-z0-9.:*%<>\\\\\\[\\]-]{1,10}".prop_map(|a| Item::Atom(a.into_bytes())),
            proptest::collection::vec(
                any::<u8>().prop_filter("no CR/LF/NUL", |b| !matches!(b, 0 | b'\r' | b'\n')),
                0..12
            )
            .prop_map(Item::Str),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            proptest::collection::vec(inner, 0..4).prop_map(Item::List)
        })
    }

    fn render(items: &[Item], out: &mut Vec<u8>) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            match item {
                Item::Atom(a) => out.extend_from_slice(a),
                Item::Str(s) => {
                    out.push(b'"');
                    for &c in s {
                        if c == b'"' || c == b'\\' {
                            out.push(b'\\');
                        }
                        out.push(c);
                    }
                    out.push(b'"');
                }
                Item::List(l) => {
                    out.push(b'(');
                    render(l, out);
                    out.push(b')');
                }
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_any_line(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut l = Lexer::new();
            if l.feed_line(&bytes).is_ok() {
                let _ = l.finish();
            }
        }

        #[test]
        fn rendered_items_lex_back(items in proptest::collection::vec(item(), 0..6)) {
            let mut line = Vec::new();
            render(&items, &mut line);
            let mut l = Lexer::new();
            prop_assert_eq!(l.feed_line(&line), Ok(None));
            prop_assert_eq!(l.finish(), Ok(items));
        }

        #[test]
        fn literal_marker_survives_any_prefix(prefix in "[ -z]{0,30}", n in any::<u64>(), plus in any::<bool>()) {
            let prefix = prefix.replace(['{', '}', '"', '(', ')'], "");
            let line = format!("{prefix} {{{n}{}}}", if plus { "+" } else { "" });
            let m = Lexer::new().feed_line(line.as_bytes()).unwrap().unwrap();
            prop_assert_eq!((m.len, m.synchronizing), (n, !plus));
            prop_assert_eq!(trailing_literal(format!("{line}\r\n").as_bytes()), Some(n));
        }
    }

    fn lex(text: &[u8]) -> Result<Vec<Item>, SyntaxError> {
        let mut l = Lexer::new();
        assert_eq!(l.feed_line(text)?, None);
        l.finish()
    }

    #[test]
    fn fetch_section_with_header_list() {
        let items = lex(b"1:* (UID BODY.PEEK[HEADER.FIELDS (FROM \"TO\")]<0.100>)").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], Item::Atom(b"1:*".to_vec()));
    }

    #[test]
    fn quoted_escapes() {
        let items = lex(br#""a\"b\\c" x"#).unwrap();
        assert_eq!(items[0], Item::Str(br#"a"b\c"#.to_vec()));
    }

    #[test]
    fn unbalanced() {
        assert_eq!(lex(b"\"abc"), Err(SyntaxError::UnbalancedQuote));
        assert_eq!(lex(b"(a (b)"), Err(SyntaxError::UnbalancedParens));
        assert_eq!(lex(b"a)"), Err(SyntaxError::UnbalancedParens));
        assert_eq!(lex(br#""a\x""#), Err(SyntaxError::BadEscape));
    }

    #[test]
    fn literal_markers() {
        let mut l = Lexer::new();
        let m = l.feed_line(b"INBOX {12}").unwrap().unwrap();
        assert_eq!((m.len, m.synchronizing, m.offset), (12, true, 6));
        let m = Lexer::new().feed_line(b"{4294967296+}").unwrap().unwrap();
        assert_eq!((m.len, m.synchronizing), (4_294_967_296, false));
        let m = Lexer::new()
            .feed_line(b"{99999999999999999999}")
            .unwrap()
            .unwrap();
        assert_eq!(m.len, u64::MAX);
        assert_eq!(
            Lexer::new().feed_line(b"{12} x"),
            Err(SyntaxError::BadLiteral)
        );
        assert_eq!(
            Lexer::new().feed_line(b"{1a}"),
            Err(SyntaxError::BadLiteral)
        );
        assert_eq!(
            Lexer::new().feed_line(b"{123456789012345678901}"),
            Err(SyntaxError::BadLiteral)
        );
    }

    #[test]
    fn depth_is_bounded() {
        let deep = vec![b'('; MAX_DEPTH + 2];
        assert_eq!(Lexer::new().feed_line(&deep), Err(SyntaxError::TooDeep));
    }

    #[test]
    fn trailing_literal_of_response_lines() {
        assert_eq!(
            trailing_literal(b"* 1 FETCH (BODY[] {2048}\r\n"),
            Some(2048)
        );
        assert_eq!(trailing_literal(b"* 1 FETCH (FLAGS (\\Seen))\r\n"), None);
        assert_eq!(trailing_literal(b"* OK {x}\r\n"), None);
    }

    #[test]
    fn tags() {
        assert!(is_valid_tag(b"A001"));
        assert!(is_valid_tag(b"a]b"));
        for bad in [
            &b""[..],
            b"a+b",
            b"a*",
            b"a(",
            b"a\"",
            b"a\\",
            b"a{",
            b"\xc3\xa9",
            b"a%",
        ] {
            assert!(!is_valid_tag(bad), "{bad:?}");
        }
        assert!(!is_valid_tag(&[b'a'; MAX_TAG_BYTES + 1]));
    }
}
