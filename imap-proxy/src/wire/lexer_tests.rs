//! Tests of the IMAP tokenizer: examples and a round-trip property.

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
