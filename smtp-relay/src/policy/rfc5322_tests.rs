use super::*;
use proptest::prelude::*;

fn parse(v: &str) -> Result<Vec<String>, Problem> {
    address_list(v.as_bytes()).map(|l| l.into_iter().map(|a| a.to_string()).collect())
}

#[test]
fn strict_forms_parse() {
    for (value, want) in [
        ("alice@example.test", vec!["alice@example.test"]),
        (" Alice <ALICE@Example.TEST> ", vec!["alice@example.test"]),
        (
            "\"Smith, J\\\"r\" <j@x.test>, k@y.test (Kay)",
            vec!["j@x.test", "k@y.test"],
        ),
        ("John Q. Public <jqp@x.test>", vec!["jqp@x.test"]),
        (
            "Team: a@x.test, B <b@x.test>;",
            vec!["a@x.test", "b@x.test"],
        ),
        ("=?utf-8?b?SsO2cmc=?= <j@x.test>", vec!["j@x.test"]),
        ("Jörg <j@bücher.example>", vec!["j@xn--bcher-kva.example"]),
        ("ops@intranet", vec!["ops@intranet"]),
    ] {
        assert_eq!(
            parse(value),
            Ok(want.iter().map(|s| s.to_string()).collect()),
            "{value}"
        );
    }
}

/// Issue #10 item 1: encoded-words that a reader would decode into address syntax.
#[test]
fn encoded_words_cannot_hide_an_address() {
    for value in [
        "=?utf-8?q?<evil@evil.test>?= <alice@example.test>",
        "=?utf-8?q?=3Cevil=40evil.test=3E?= <alice@example.test>",
        "=?utf-8?b?PGV2aWxAZXZpbC50ZXN0Pg==?= <alice@example.test>",
        "=?utf-8?q?a=2C_evil=40evil.test?= <alice@example.test>",
        "<=?utf-8?q?boss?=alice@example.test>",
        "=?utf-8?q?boss?=alice@example.test",
        "alice@=?utf-8?q?example?=.test",
        "\"=?utf-8?q?=3Cevil=40evil.test=3E?=\" <alice@example.test>",
        "=?utf-7?q?+ADw-evil+AEA-evil.test+AD4-?= <alice@example.test>",
        "=?utf-8?x?abc?= <alice@example.test>",
    ] {
        assert!(parse(value).is_err(), "{value} -> {:?}", parse(value));
    }
}

/// Issue #10 item 2: quoted local parts, escapes, routes, literals, comments.
#[test]
fn ambiguous_addresses_are_refused() {
    for value in [
        "<\"x@corp.test>\"@evil.test>",
        "\"x@corp.test\"@evil.test",
        "\"alice\"@example.test",
        "alice\\@evil.test@example.test",
        "<@evil.test:alice@example.test>",
        "alice@[127.0.0.1]",
        "alice @ example.test",
        "< alice@example.test>",
        "alice@example.test (<evil@evil.test>)",
        "alice@example.test (\\@)",
        "a@x.test,,b@x.test",
        "a@x.test,",
        "G1: G2: a@x.test;;",
        "alice@example.test <evil@evil.test>",
        "Alice <alice@example.test",
        "x%evil.test@example.test",
        "\u{212A}im@example.test",
    ] {
        assert!(parse(value).is_err(), "{value} -> {:?}", parse(value));
    }
}

fn arb_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("alice@example.test".to_string()),
        Just("evil@evil.test".to_string()),
        Just("<".to_string()),
        Just(">".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just(";".to_string()),
        Just("@".to_string()),
        Just(" ".to_string()),
        Just("=?utf-8?q?".to_string()),
        Just("?=".to_string()),
        Just("=3C".to_string()),
        Just("=40".to_string()),
        "[a-z.]{1,6}",
    ]
}

proptest! {
    /// Whatever is accepted names only addresses that appear literally, in angle brackets
    /// or bare, in the value: no decoding or unquoting can produce another one.
    #[test]
    fn accepted_addresses_are_literal(pieces in proptest::collection::vec(arb_piece(), 0..12)) {
        let value = pieces.concat();
        if let Ok(list) = parse(&value) {
            for a in list {
                prop_assert!(value.to_ascii_lowercase().contains(&a), "{value:?} -> {a}");
            }
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = parse(&s);
    }
}
