//! A strict RFC 5322 address-list parser for the headers that name the sender (From, Sender,
//! Resent-From, Resent-Sender), written to agree with any strict reader (the receiving
//! server's, a mail client's, dovecot's ENVELOPE) or to refuse.
//!
//! Accepted: mailbox (`addr-spec`, `name-addr`), groups of mailboxes, display names of atoms
//! and quoted strings (a `.` between words, the common obs-phrase, is accepted), comments in
//! CFWS positions, RFC 2047 encoded-words as whole atoms of a display name, RFC 6532 UTF-8 in
//! display names. Refused: quoted local parts, domain literals, obs-route, whitespace or
//! comments inside an address, empty list elements, nested groups, an encoded-word anywhere
//! but a display-name atom (in an address, in a quoted string, half-formed), an encoded-word
//! whose decoded text holds a special (`<`, `>`, `@`, `,`, `;`, `:`, `"`, `\`) or a control
//! character (RFC 2047 §5), or an unknown charset; comments holding `<`, `>` or `@`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mailcred_core::policy::{Address, AddressError};

/// Deepest comment nesting accepted.
const MAX_COMMENT_DEPTH: usize = 8;

/// Why a header value was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    NotUtf8,
    Syntax(&'static str),
    QuotedLocalPart,
    DomainLiteral,
    ObsoleteRoute,
    EncodedWordOutsideName,
    EncodedWordWithSpecials,
    UnknownCharset,
    SuspiciousComment,
    NestedGroup,
    Address(AddressError),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotUtf8 => write!(f, "it is not UTF-8"),
            Problem::Syntax(what) => write!(f, "{what}"),
            Problem::QuotedLocalPart => write!(f, "quoted local parts are not accepted"),
            Problem::DomainLiteral => write!(f, "address literals are not accepted"),
            Problem::ObsoleteRoute => write!(f, "source routes (<@host:...>) are not accepted"),
            Problem::EncodedWordOutsideName => {
                write!(f, "an encoded-word (=?...?=) outside a display name")
            }
            Problem::EncodedWordWithSpecials => {
                write!(
                    f,
                    "an encoded-word decodes to address syntax (RFC 2047 section 5)"
                )
            }
            Problem::UnknownCharset => {
                write!(f, "an encoded-word has a charset that cannot be checked")
            }
            Problem::SuspiciousComment => write!(f, "a comment holds <, > or @"),
            Problem::NestedGroup => write!(f, "groups cannot nest"),
            Problem::Address(e) => write!(f, "an address is not accepted: {e}"),
        }
    }
}

/// Every address of one header value (a group contributes its members; an empty group none).
pub fn address_list(value: &[u8]) -> Result<Vec<Address>, Problem> {
    let text = std::str::from_utf8(value).map_err(|_| Problem::NotUtf8)?;
    if text
        .chars()
        .any(|c| c.is_control() && c != '\t' && c != '\r' && c != '\n')
    {
        return Err(Problem::Syntax("a control character"));
    }
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    p.cfws()?;
    if p.at_end() {
        return Err(Problem::Syntax("no address"));
    }
    loop {
        p.address(&mut out, true)?;
        p.cfws()?;
        match p.next() {
            None => break,
            Some(b',') => p.cfws()?,
            Some(_) => return Err(Problem::Syntax("text after an address")),
        }
        if p.at_end() || p.peek() == Some(b',') {
            return Err(Problem::Syntax("an empty list element"));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

fn is_wsp(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.i += usize::from(b.is_some());
        b
    }

    /// Folding white space and comments.
    fn cfws(&mut self) -> Result<(), Problem> {
        loop {
            match self.peek() {
                Some(b) if is_wsp(b) => self.i += 1,
                Some(b'(') => self.comment()?,
                _ => return Ok(()),
            }
        }
    }

    fn comment(&mut self) -> Result<(), Problem> {
        let mut depth = 0usize;
        loop {
            match self.next() {
                None => return Err(Problem::Syntax("an unclosed comment")),
                Some(b'(') => {
                    depth += 1;
                    if depth > MAX_COMMENT_DEPTH {
                        return Err(Problem::Syntax("comments nested too deep"));
                    }
                }
                Some(b')') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Some(b'\\') => match self.next() {
                    None => return Err(Problem::Syntax("a backslash at the end")),
                    Some(b'<' | b'>' | b'@') => return Err(Problem::SuspiciousComment),
                    Some(_) => {}
                },
                Some(b'<' | b'>' | b'@') => return Err(Problem::SuspiciousComment),
                Some(_) => {}
            }
        }
    }

    /// A quoted string's content, escapes resolved.
    fn quoted_string(&mut self) -> Result<String, Problem> {
        let start = self.i;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.next() {
                None => return Err(Problem::Syntax("an unclosed quoted string")),
                Some(b'"') => break,
                Some(b'\\') => match self.next() {
                    Some(b) => out.push(b),
                    None => return Err(Problem::Syntax("a backslash at the end")),
                },
                Some(b) => out.push(b),
            }
        }
        if self.s[start..self.i].windows(2).any(|w| w == b"=?") {
            // Some clients decode encoded-words inside quotes; no reader may see another name.
            return Err(Problem::EncodedWordOutsideName);
        }
        String::from_utf8(out).map_err(|_| Problem::NotUtf8)
    }

    fn atom(&mut self) -> &[u8] {
        let start = self.i;
        while self.peek().is_some_and(is_atext) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// A display name: words (atoms, encoded-words, quoted strings) with CFWS and dots between.
    /// Returns whether any word was read.
    fn phrase(&mut self) -> Result<bool, Problem> {
        let mut words = 0;
        loop {
            self.cfws()?;
            match self.peek() {
                Some(b'"') => {
                    self.quoted_string()?;
                }
                Some(b'.') if words > 0 => self.i += 1,
                Some(b) if is_atext(b) => {
                    let atom = self.atom().to_vec();
                    check_display_atom(&atom)?;
                }
                _ => return Ok(words > 0),
            }
            words += 1;
        }
    }

    fn address(&mut self, out: &mut Vec<Address>, group_allowed: bool) -> Result<(), Problem> {
        let start = self.i;
        let named = self.phrase()?;
        match self.peek() {
            Some(b'<') => {
                self.i += 1;
                out.push(self.addr_spec()?);
                if self.next() != Some(b'>') {
                    return Err(Problem::Syntax("an address without its closing >"));
                }
                Ok(())
            }
            Some(b':') if named => {
                if !group_allowed {
                    return Err(Problem::NestedGroup);
                }
                self.i += 1;
                self.group_members(out)
            }
            _ => {
                self.i = start;
                self.cfws()?;
                out.push(self.addr_spec()?);
                Ok(())
            }
        }
    }

    fn group_members(&mut self, out: &mut Vec<Address>) -> Result<(), Problem> {
        self.cfws()?;
        if self.peek() == Some(b';') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.address(out, false)?;
            self.cfws()?;
            match self.next() {
                Some(b';') => return Ok(()),
                Some(b',') => self.cfws()?,
                _ => return Err(Problem::Syntax("a group without its closing ;")),
            }
        }
    }

    /// `local@domain`, both dot-atoms, nothing between them.
    fn addr_spec(&mut self) -> Result<Address, Problem> {
        match self.peek() {
            Some(b'"') => return Err(Problem::QuotedLocalPart),
            Some(b'@') => return Err(Problem::ObsoleteRoute),
            _ => {}
        }
        let local = self.dot_atom()?;
        if self.next() != Some(b'@') {
            return Err(Problem::Syntax("an address without @"));
        }
        if self.peek() == Some(b'[') {
            return Err(Problem::DomainLiteral);
        }
        let domain = self.dot_atom()?;
        let text = format!("{local}@{domain}");
        if text.contains("=?") {
            return Err(Problem::EncodedWordOutsideName);
        }
        Address::parse(&text).map_err(Problem::Address)
    }

    fn dot_atom(&mut self) -> Result<String, Problem> {
        let start = self.i;
        loop {
            if self.atom().is_empty() {
                return Err(Problem::Syntax("an empty part in an address"));
            }
            if self.peek() != Some(b'.') {
                break;
            }
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .map(str::to_owned)
            .map_err(|_| Problem::NotUtf8)
    }
}

/// An atom of a display name: plain text, or a whole encoded-word whose decoded text holds
/// no special (so that no reader can find an address in it).
fn check_display_atom(atom: &[u8]) -> Result<(), Problem> {
    if !atom.windows(2).any(|w| w == b"=?") {
        return Ok(());
    }
    let decoded = decode_encoded_word(atom)?;
    if decoded
        .iter()
        .any(|&b| b < 0x20 || b == 0x7f || b"<>@,;:\"\\".contains(&b))
    {
        return Err(Problem::EncodedWordWithSpecials);
    }
    Ok(())
}

/// `=?charset?Q|B?text?=` decoded to bytes in a charset where ASCII bytes are ASCII.
fn decode_encoded_word(atom: &[u8]) -> Result<Vec<u8>, Problem> {
    let inner = atom
        .strip_prefix(b"=?")
        .and_then(|a| a.strip_suffix(b"?="))
        .ok_or(Problem::EncodedWordOutsideName)?;
    let mut parts = inner.splitn(3, |&b| b == b'?');
    let (Some(charset), Some(encoding), Some(text)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Problem::EncodedWordOutsideName);
    };
    if text.contains(&b'?') {
        return Err(Problem::EncodedWordOutsideName);
    }
    let charset = String::from_utf8_lossy(charset).to_ascii_lowercase();
    let charset = charset.split('*').next().unwrap_or_default();
    let ascii_compatible = matches!(charset, "utf-8" | "us-ascii")
        || charset.starts_with("iso-8859-")
        || charset.starts_with("windows-125");
    if !ascii_compatible {
        return Err(Problem::UnknownCharset);
    }
    match encoding {
        b"Q" | b"q" => decode_q(text),
        b"B" | b"b" => STANDARD
            .decode(text)
            .map_err(|_| Problem::Syntax("an encoded-word that does not decode")),
        _ => Err(Problem::EncodedWordOutsideName),
    }
}

fn decode_q(text: &[u8]) -> Result<Vec<u8>, Problem> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = text
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(Problem::Syntax("an encoded-word that does not decode"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
#[path = "rfc5322_tests.rs"]
mod tests;
