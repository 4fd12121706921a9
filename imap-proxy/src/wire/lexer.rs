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
#[path = "lexer_tests.rs"]
mod tests;
