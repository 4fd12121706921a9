//! Property tests: the request parser never panics, whatever the bytes or JSON; the password
//! never appears in an error body or a log line, whatever else is wrong with the request and
//! even when the server echoes it in its refusal.

use std::io::Write;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::request;
use super::*;

fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("name".to_string()),
        Just("username".to_string()),
        Just("password".to_string()),
        Just("smtp".to_string()),
        Just("imap".to_string()),
        Just("policy".to_string()),
        Just("host".to_string()),
        Just("port".to_string()),
        Just("tls".to_string()),
        Just("allowedSenders".to_string()),
        Just("lifetimeSeconds".to_string()),
        "[a-zA-Z]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Log lines written while a test runs, through a subscriber of its own.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What may be wrong with a request besides its password.
fn mutation() -> impl Strategy<Value = usize> {
    0usize..8
}

fn mutate(v: &mut Value, which: usize) {
    match which {
        0 => {}
        1 => v["smtp"]["port"] = json!(0),
        2 => v["usernme"] = json!("x"),
        3 => v["policy"]["smtp"]["allowedSenders"] = json!(["alice@"]),
        4 => v["lifetimeSeconds"] = json!(1),
        5 => v["smtp"]["tls"] = json!("none"),
        6 => v["name"] = json!("BAD NAME"),
        _ => v["imap"]["host"] = json!("imap://x"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = request::parse(&bytes);
    }

    #[test]
    fn the_parser_never_panics_on_json(v in json_value()) {
        let _ = request::parse(v.to_string().as_bytes());
        // And the same under a valid-looking envelope.
        let mut g = good();
        g["policy"] = v.clone();
        let _ = request::parse(g.to_string().as_bytes());
        g = good();
        g["smtp"] = v;
        let _ = request::parse(g.to_string().as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_password_is_never_in_an_error_or_a_log_line(
        password in "[!-~]{12,64}",
        which in mutation(),
        echo in any::<bool>(),
    ) {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let answer = if echo { Answer::EchoPassword } else { Answer::Reject("535 no".into()) };
        let body = runtime.block_on(async {
            let f = fixture(answer);
            let mut v = good();
            v["password"] = json!(password);
            mutate(&mut v, which);
            let (status, body, _) = call(&f.api, post(v.to_string())).await;
            assert!(status.is_client_error(), "{status} {body}");
            assert_eq!(f.store.len(), 0);
            body
        });
        let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        prop_assert!(!logged.is_empty(), "the refusal is logged");
        prop_assert!(!body.to_string().contains(&password), "{}", body);
        // JSON escaping of '"' and '\\' aside, the text must not be there either way.
        let escaped = serde_json::to_string(&password).unwrap();
        prop_assert!(!logged.contains(&password) && !logged.contains(escaped.trim_matches('"')), "{}", logged);
    }
}
