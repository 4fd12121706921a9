//! The sender-header check against a second reader: whatever the relay accepts (every
//! From / Sender / Resent-From / Resent-Sender address allowed), mail-parser (Stalwart's
//! lenient, RFC 2047-decoding reader) must also read only allowed addresses from.

use mail_parser::{HeaderName, HeaderValue, MessageParser};
use mailcred_core::crd::SmtpPolicy;
use mailcred_smtp::policy::CompiledPolicy;
use mailcred_smtp::{DataReader, HeaderSenders, header_senders};

/// The policy of the oracle: exactly one address and one domain.
pub const ALLOWED: [&str; 2] = ["alice@example.test", "*@corp.test"];

fn policy() -> CompiledPolicy {
    let smtp = SmtpPolicy {
        allowed_senders: ALLOWED.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    CompiledPolicy::new(&smtp, "alice@example.test")
}

/// Independent of the relay's matching: ASCII case folding, exact domain.
pub fn oracle_allows(address: &str) -> bool {
    let lower = address.to_ascii_lowercase();
    let lower = lower.trim_end_matches('.');
    lower == "alice@example.test"
        || lower
            .rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d == "corp.test")
}

/// The message as the relay would hand it on: through the DATA reader (CRLF everywhere);
/// `None` for what the session refuses before the header check (NUL).
fn normalized(data: &[u8]) -> Option<Vec<u8>> {
    let mut reader = DataReader::new(1 << 20);
    let mut message = Vec::new();
    let mut input = data.to_vec();
    input.extend_from_slice(b"\r\n.\r\n");
    let _ = reader.feed(&input, &mut message);
    (!reader.saw_nul()).then_some(message)
}

/// True when the relay's header check lets the message through.
pub fn relay_accepts(message: &[u8]) -> bool {
    let policy = policy();
    match header_senders(message) {
        HeaderSenders::Addresses(list) => list.iter().all(|(_, a)| policy.check_sender(a).is_ok()),
        HeaderSenders::Unparsable(..) | HeaderSenders::Malformed => false,
    }
}

/// Any bytes as a message header section (and body).
pub fn smtp_headers(data: &[u8]) {
    let Some(message) = normalized(data) else {
        return;
    };
    if !relay_accepts(&message) {
        return;
    }
    let Some(parsed) = MessageParser::new().parse_headers(&message) else {
        return;
    };
    for name in [
        HeaderName::From,
        HeaderName::Sender,
        HeaderName::ResentFrom,
        HeaderName::ResentSender,
    ] {
        for value in parsed.header_values(name.clone()) {
            let HeaderValue::Address(list) = value else {
                continue;
            };
            for addr in list.iter() {
                if let Some(a) = addr.address() {
                    assert!(
                        oracle_allows(a),
                        "accepted, but mail-parser reads {name:?} as {a:?}: {:?}",
                        String::from_utf8_lossy(&message)
                    );
                }
            }
        }
    }
}
