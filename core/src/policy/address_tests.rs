use proptest::prelude::*;

use super::*;
use AddressRole::{Recipient, Sender};

fn addr(text: &str) -> Address {
    Address::parse(text).expect(text)
}

#[test]
fn accepts_the_documented_forms() {
    for p in [
        "app@example.com",
        "*@example.com",
        "a.b+tag@sub.example.test",
        "x@bücher.de",
        "*@intranet",
        "ops@localhost",
    ] {
        assert!(AddressPattern::parse(p, Sender).is_ok(), "{p}");
        assert!(AddressPattern::parse(p, Recipient).is_ok(), "{p}");
    }
    assert_eq!(
        AddressPattern::parse("*", Recipient),
        Ok(AddressPattern::Any)
    );
}

#[test]
fn rejects_with_the_reason() {
    let cases = [
        ("*", Sender, "lone `*` is not allowed for senders"),
        ("example.com", Sender, "expected `user@domain`"),
        ("@example.com", Recipient, "before `@` is empty"),
        ("app@", Recipient, "after `@` is empty"),
        ("a*b@example.com", Sender, "`*` may only stand alone"),
        ("app@*.example.com", Sender, "wildcards are not allowed"),
        ("*.example.com", Sender, "expected `user@domain`"),
        ("app@example..com", Sender, "empty label"),
        ("app@-example.com", Sender, "starts or ends with `-`"),
        ("app@exa_mple.com", Sender, "contains '_'"),
        ("a pp@example.com", Sender, "contains ' '"),
        ("x%y@example.com", Recipient, "source routing"),
        ("x!y@example.com", Recipient, "source routing"),
        ("\"a\"@example.com", Sender, "contains '\"'"),
        (".a@example.com", Sender, "starts or ends with `.`"),
        ("jörg@example.com", Sender, "SMTPUTF8 is not offered"),
        ("a@[192.0.2.1]", Sender, "address literals"),
    ];
    for (pattern, role, expected) in cases {
        let err = AddressPattern::parse(pattern, role)
            .expect_err(pattern)
            .to_string();
        assert!(err.contains(expected), "{pattern}: {err}");
    }
}

#[test]
fn exact_match_folds_ascii_case_only() {
    let p = AddressPattern::parse("Kim@Example.COM", Sender).unwrap();
    assert!(p.matches(&addr("kim@example.com")));
    assert!(p.matches(&addr("KIM@EXAMPLE.com.")));
    // U+212A KELVIN SIGN folds to `k` under Unicode rules; here it is not even ASCII.
    assert_eq!(
        Address::parse("\u{212A}im@example.com"),
        Err(AddressError::NonAsciiLocal)
    );
}

#[test]
fn domain_pattern_matches_that_domain_only() {
    let p = AddressPattern::parse("*@corp.test", Sender).unwrap();
    assert!(p.matches(&addr("anyone@corp.test")));
    assert!(!p.matches(&addr("anyone@sub.corp.test")));
    assert!(!p.matches(&addr("anyone@corp.test.evil")));
}

#[test]
fn idn_domains_compare_in_ascii_form() {
    let p = AddressPattern::parse("*@bücher.de", Sender).unwrap();
    assert!(p.matches(&addr("x@xn--bcher-kva.de")));
    assert!(p.matches(&addr("x@BÜCHER.de")));
    assert_eq!(addr("x@bücher.de").domain(), "xn--bcher-kva.de");
}

#[test]
fn a_list_with_one_bad_entry_names_it() {
    let err = AddressPatterns::parse_all(&["ok@example.com", "@bad"], Sender).unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(err.entry, "@bad");
    assert!(err.to_string().contains("before `@` is empty"));
    let list = AddressPatterns::parse_all(&["*@a.test", "b@c.test"], Sender).unwrap();
    assert!(list.allows(&addr("z@a.test")) && list.allows(&addr("B@c.test")));
    assert!(!list.allows(&addr("z@c.test")));
}

/// An address the pattern is meant for: what a human reading the pattern would send from.
fn witness(pattern: &AddressPattern) -> String {
    match pattern {
        AddressPattern::Any => "anyone@example.test".into(),
        AddressPattern::Domain(d) => format!("someone@{d}"),
        AddressPattern::Exact(a) => a.to_string(),
    }
}

proptest! {
    /// Whatever the operator and the plugin accept, the relay can match: no accepted pattern
    /// allows nothing (the `*@intranet` bug).
    #[test]
    fn every_accepted_pattern_matches_an_address(
        p in "(\\*|[a-zA-Z0-9._%+*-]{0,12})@[a-zA-Z0-9ü._*-]{0,20}|\\*|[ -~]{0,30}",
        recipient in any::<bool>(),
    ) {
        let role = if recipient { Recipient } else { Sender };
        if let Ok(pattern) = AddressPattern::parse(&p, role) {
            let w = witness(&pattern);
            let a = Address::parse(&w);
            prop_assert!(a.is_ok(), "{p:?} accepted but its witness {w:?} does not parse");
            prop_assert!(pattern.matches(&a.unwrap()), "{p:?} matches not even {w:?}");
        }
    }

    #[test]
    fn case_never_changes_the_decision(
        local in "[a-zA-Z0-9._+-]{1,20}",
        domain in "[a-zA-Z0-9-]{1,15}\\.[a-zA-Z]{2,6}",
        flips in proptest::collection::vec(any::<bool>(), 64),
    ) {
        let text = format!("{local}@{domain}");
        let flipped: String = text.chars().zip(flips.iter().cycle()).map(|(c, f)| {
            if *f { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }
        }).collect();
        prop_assert_eq!(Address::parse(&text).ok(), Address::parse(&flipped).ok());
    }

    #[test]
    fn parsing_never_panics(s in any::<String>()) {
        let _ = Address::parse(&s);
        let _ = AddressPattern::parse(&s, Sender);
        let _ = AddressPattern::parse(&s, Recipient);
    }

    /// An accepted address is plain dot-atom ASCII: nothing a header or upstream parser could
    /// read as a second address.
    #[test]
    fn accepted_addresses_carry_no_specials(s in "[ -~]{0,40}") {
        if let Ok(a) = Address::parse(&s) {
            let forbidden = |c: char| "<>()[]\\,;:\"@ %!".contains(c);
            prop_assert!(!a.local().chars().any(forbidden));
            prop_assert!(a.domain().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
        }
    }
}
