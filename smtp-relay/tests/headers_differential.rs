//! Differential test of the sender-header check (issue #10 items 1 and 2): for generated
//! adversarial header sections, whatever the relay accepts must read, under an independent
//! strict parser (Python's `email` with `policy=email.policy.default`), as allowed addresses
//! only. Python runs once per batch of headers.

use std::io::Write;
use std::process::{Command, Stdio};

use mailcred_core::crd::SmtpPolicy;
use mailcred_smtp::policy::CompiledPolicy;
use mailcred_smtp::{HeaderSenders, header_senders};
use proptest::prelude::*;

const READ_PY: &str = r#"
import email, email.policy, json, sys
out = []
for raw in json.load(sys.stdin):
    msg = email.message_from_bytes(raw.encode('utf-8', 'surrogateescape'), policy=email.policy.default)
    found = []
    for name in ('From', 'Sender', 'Resent-From', 'Resent-Sender'):
        for h in msg.get_all(name) or []:
            try:
                found += [[a.username, a.domain] for a in h.addresses]
            except Exception as e:
                found.append(['<error>', repr(e)])
    out.append(found)
json.dump(out, sys.stdout)
"#;

fn relay_accepts(message: &str) -> bool {
    let smtp = SmtpPolicy {
        allowed_senders: vec!["alice@example.test".into(), "*@corp.test".into()],
        ..Default::default()
    };
    let policy = CompiledPolicy::new(&smtp, "alice@example.test");
    match header_senders(message.as_bytes()) {
        HeaderSenders::Addresses(list) => {
            !list.is_empty() && list.iter().all(|(_, a)| policy.check_sender(a).is_ok())
        }
        HeaderSenders::Unparsable(..) | HeaderSenders::Malformed => false,
    }
}

/// What Python reads from each message: (username, domain) pairs.
fn python_reads(messages: &[String]) -> Vec<Vec<(String, String)>> {
    let mut child = Command::new("python3")
        .args(["-c", READ_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = serde_json::to_vec(messages).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn allowed(username: &str, domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    let domain = domain.trim_end_matches('.');
    domain == "corp.test" && !username.is_empty()
        || domain == "example.test" && username.eq_ignore_ascii_case("alice")
}

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("alice@example.test".to_string()),
        3 => "[a-z]{1,5}@corp\\.test",
        2 => Just("evil@evil.test".to_string()),
        1 => Just("<".to_string()),
        1 => Just(">".to_string()),
        2 => Just("\"".to_string()),
        1 => Just("\\".to_string()),
        1 => Just("(".to_string()),
        1 => Just(")".to_string()),
        1 => Just(",".to_string()),
        1 => Just(":".to_string()),
        1 => Just(";".to_string()),
        1 => Just("@".to_string()),
        2 => Just(" ".to_string()),
        1 => Just("\r\n ".to_string()),
        1 => Just("=?utf-8?q?".to_string()),
        1 => Just("?=".to_string()),
        1 => Just("=3Cevil=40evil.test=3E".to_string()),
        1 => Just("=?utf-8?b?PGV2aWxAZXZpbC50ZXN0Pg==?=".to_string()),
        1 => Just("=?utf-8?q?J=C3=B6rg?=".to_string()),
        1 => Just("@evil.test:".to_string()),
        1 => Just("\u{212A}".to_string()),
        1 => Just("Jörg".to_string()),
        2 => "[A-Za-z.]{1,6}",
    ]
}

/// Mostly well-formed shapes with adversarial parts, plus free concatenations.
fn value() -> impl Strategy<Value = String> {
    let pieces = || proptest::collection::vec(piece(), 0..5).prop_map(|p| p.concat());
    let allowed = || {
        prop_oneof![
            Just("alice@example.test".to_string()),
            "[a-z]{1,5}@corp\\.test"
        ]
    };
    prop_oneof![
        4 => (pieces(), allowed()).prop_map(|(name, addr)| format!("{name} <{addr}>")),
        2 => (pieces(), allowed()).prop_map(|(name, addr)| format!("\"{name}\" <{addr}>")),
        2 => (allowed(), pieces()).prop_map(|(addr, c)| format!("{addr} ({c})")),
        1 => (pieces(), pieces()).prop_map(|(name, addr)| format!("{name} <{addr}>")),
        1 => (pieces(), pieces()).prop_map(|(name, addr)| format!("\"{name}\" <{addr}>")),
        1 => (pieces(), pieces()).prop_map(|(a, b)| format!("G: {a}, {b};")),
        1 => (pieces(), pieces()).prop_map(|(a, c)| format!("{a} ({c})")),
        1 => proptest::collection::vec(piece(), 1..12).prop_map(|p| p.concat()),
    ]
}

fn message() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just("From"),
        Just("Sender"),
        Just("Resent-From"),
        Just("Resent-Sender"),
        Just("From "),
        Just("FROM"),
        Just("X-Other"),
    ];
    proptest::collection::vec((field, value()), 1..4).prop_map(|fields| {
        let mut m: String = fields
            .into_iter()
            .map(|(f, v)| format!("{f}: {v}\r\n"))
            .collect();
        m.push_str("Subject: t\r\n\r\nbody\r\n");
        m
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn accepted_headers_read_as_allowed_addresses_to_python(
        batch in proptest::collection::vec(message(), 400)
    ) {
        let accepted: Vec<String> = batch.into_iter().filter(|m| relay_accepts(m)).collect();
        if accepted.is_empty() {
            return Ok(());
        }
        for (message, found) in accepted.iter().zip(python_reads(&accepted)) {
            for (username, domain) in found {
                prop_assert!(
                    allowed(&username, &domain),
                    "relay accepted {message:?}, Python reads {username:?}@{domain:?}"
                );
            }
        }
    }
}

/// The generators reach acceptance, and the known attacks are refused (a differential test
/// that never accepts anything would prove nothing).
#[test]
fn generators_and_fixed_attacks() {
    let accepted = [
        "From: Alice <alice@example.test>\r\n\r\n",
        "From: =?utf-8?q?J=C3=B6rg?= <j@corp.test>\r\nSender: alice@example.test\r\n\r\n",
        "From: G: a@corp.test, b@corp.test;\r\n\r\n",
    ];
    for m in accepted {
        assert!(relay_accepts(m), "{m}");
    }
    let found = python_reads(&accepted.map(str::to_string));
    assert!(found.iter().all(|f| !f.is_empty()), "{found:?}");
    for m in [
        "From: =?utf-8?q?<evil@evil.test>?= <alice@example.test>\r\n\r\n",
        "Sender: =?utf-8?q?<evil@evil.test>?= <alice@example.test>\r\n\r\n",
        "From: <=?utf-8?q?boss?=alice@example.test>\r\n\r\n",
        "From: <\"x@corp.test>\"@evil.test>\r\n\r\n",
        "From: \u{212A}im@corp.test\r\n\r\n",
        "Resent-From: evil@evil.test\r\n\r\n",
    ] {
        assert!(!relay_accepts(m), "{m}");
    }
}
