use proptest::prelude::*;
use serde_json::json;

use super::*;

fn seal_json() -> serde_json::Value {
    json!({
        "namespace": "shop", "name": "billing", "token": "t",
        "aadSha256": "ab".repeat(32), "encryptedDataKey": "AAAA", "nonce": "AAAA",
        "ciphertext": "AAAA"
    })
}

#[test]
fn each_bad_field_is_named() {
    assert_eq!(parse_open(b"{").unwrap_err().field, "body");
    assert_eq!(parse_open(b"[]").unwrap_err().field, "body");
    assert_eq!(
        parse_open(br#"{"namespace":"a","name":"b"}"#)
            .unwrap_err()
            .field,
        "token"
    );
    assert_eq!(
        parse_open(br#"{"namespace":1,"name":"b","token":"t"}"#).unwrap_err(),
        BadField::new("namespace", "expected a string")
    );
    assert_eq!(
        parse_open(br#"{"namespace":"a","name":"b","token":"t","x":1}"#)
            .unwrap_err()
            .field,
        "body"
    );
    for field in ["aadSha256", "encryptedDataKey", "nonce", "ciphertext"] {
        let mut v = seal_json();
        v[field] = json!(7);
        let err = parse_seal(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, field);
        v.as_object_mut().unwrap().remove(field);
        assert_eq!(
            parse_seal(v.to_string().as_bytes()).unwrap_err().field,
            field
        );
    }
    let mut v = seal_json();
    v["aadSha256"] = json!("AB".repeat(32));
    assert_eq!(
        parse_seal(v.to_string().as_bytes()).unwrap_err().field,
        "aadSha256"
    );
    let mut v = seal_json();
    v["ciphertext"] = json!("A".repeat(MAX_CIPHERTEXT_B64 + 1));
    assert_eq!(
        parse_seal(v.to_string().as_bytes()).unwrap_err().field,
        "ciphertext"
    );
}

#[test]
fn a_good_seal_body_parses() {
    let body = parse_seal(seal_json().to_string().as_bytes()).unwrap();
    assert_eq!(body.link.namespace, "shop");
    assert_eq!(body.nonce, "AAAA");
}

fn field_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(json!(null)),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(|s| json!(s)),
        Just(json!([])),
        Just(json!({})),
    ]
}

proptest! {
    /// Arbitrary bytes never panic: either a body or a named field comes back.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_open(&bytes);
        let _ = parse_seal(&bytes);
    }

    /// Any field of a good body replaced by any JSON value: accepted only when it is a good
    /// string; otherwise the error names exactly that field.
    #[test]
    fn a_replaced_field_is_the_one_named(idx in 0usize..7, value in field_value()) {
        let fields = ["namespace", "name", "token", "aadSha256", "encryptedDataKey", "nonce", "ciphertext"];
        let field = fields[idx];
        let mut v = seal_json();
        v[field] = value;
        match parse_seal(v.to_string().as_bytes()) {
            Ok(body) => {
                let s = v[field].as_str().unwrap_or_default();
                prop_assert!(!s.is_empty());
                prop_assert!(body.link.namespace == v["namespace"] || field != "namespace");
            }
            Err(e) => prop_assert_eq!(e.field, field),
        }
    }
}
