//! The SMTP front-end: a whole application session (command parser, line framing, policy,
//! DATA) in memory with a recording upstream, and the DATA reader on its own.

use std::sync::Arc;

use async_trait::async_trait;
use mailcred_core::crd::{Policy, SmtpPolicy, TlsMode, UpstreamEndpoint};
use mailcred_core::credential::{CredentialSource, UsableCredential};
use mailcred_core::{MailPassword, UpstreamAuth};
use mailcred_smtp::testkit::RecordingUpstream;
use mailcred_smtp::{DataReader, RelayConfig, RelayMetrics, SmtpRelay};

use crate::mem::{MemStream, chunked, runtime};

const MAX_MESSAGE: u64 = 4096;
const MAX_RECIPIENTS: u32 = 3;

struct Source(Arc<UsableCredential>);

#[async_trait]
impl CredentialSource for Source {
    async fn credential(&self) -> Result<Arc<UsableCredential>, mailcred_core::Error> {
        Ok(self.0.clone())
    }
}

/// A relay and its recorder of its own: parallel tests (and fuzz iterations) share nothing,
/// so one run's deliveries can never be counted in another's.
fn relay() -> (SmtpRelay<RecordingUpstream>, RecordingUpstream) {
    let password = match MailPassword::new("fuzz-upstream-password".into()) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let credential = Arc::new(UsableCredential {
        namespace: "ns".into(),
        name: "mail".into(),
        username: "app@example.test".into(),
        smtp: Some(UpstreamEndpoint {
            host: "localhost".into(),
            port: 1,
            tls: TlsMode::Starttls,
            ca_pem: None,
            insecure: false,
            insecure_reason: None,
        }),
        imap: None,
        policy: Policy {
            smtp: SmtpPolicy {
                allowed_senders: vec!["app@example.test".into(), "*@allowed.test".into()],
                allowed_recipients: vec!["*@example.test".into(), "ops@other.test".into()],
                max_recipients: MAX_RECIPIENTS,
                max_message_bytes: MAX_MESSAGE,
                ..Default::default()
            },
            ..Default::default()
        },
        oauth: None,
        sealed_fingerprint: "sha256:fuzz".into(),
        auth: UpstreamAuth::Password(password),
    });
    let recorder = RecordingUpstream::default();
    let relay = SmtpRelay::with_upstream(
        RelayConfig::default(),
        Arc::new(Source(credential)),
        RelayMetrics::unregistered(),
        recorder.clone(),
    );
    (relay, recorder)
}

fn domain_of(address: &str) -> (String, String) {
    let lower = address.to_ascii_lowercase();
    match lower.rsplit_once('@') {
        Some((l, d)) => (l.to_owned(), d.trim_end_matches('.').to_owned()),
        None => (lower, String::new()),
    }
}

/// Any bytes as what an application sends on the SMTP port (first byte: read size).
/// Checks what reached upstream against the policy, independently of the relay's own code.
pub fn smtp_session(data: &[u8]) {
    smtp_session_delivered(data);
}

/// Runs [`smtp_session`] and returns how many messages reached upstream.
pub fn smtp_session_delivered(data: &[u8]) -> usize {
    let (chunk, input) = chunked(data);
    let (relay, recorder) = relay();
    let stream = MemStream::new(input, chunk);
    runtime().block_on(relay.serve_stream(stream));
    let sent = recorder.sent();
    let count = sent.len();
    for mailcred_smtp::testkit::Sent {
        from, to, message, ..
    } in sent
    {
        let (local, domain) = domain_of(&from);
        assert!(
            domain == "allowed.test" || (local == "app" && domain == "example.test"),
            "a sender outside the policy reached upstream: {from:?}"
        );
        assert!(
            !to.is_empty() && to.len() <= MAX_RECIPIENTS as usize,
            "{to:?}"
        );
        for rcpt in &to {
            let (local, domain) = domain_of(rcpt);
            assert!(
                domain == "example.test" || (local == "ops" && domain == "other.test"),
                "a recipient outside the policy reached upstream: {rcpt:?}"
            );
        }
        assert!(message.len() as u64 <= MAX_MESSAGE, "{}", message.len());
        assert_no_bare_newline(&message);
    }
    count
}

/// Every LF follows a CR and every CR precedes an LF: an upstream cannot find a line end
/// (and so an end marker) that the relay did not see.
fn assert_no_bare_newline(message: &[u8]) {
    for (i, &b) in message.iter().enumerate() {
        assert!(
            b != b'\n' || (i > 0 && message[i - 1] == b'\r'),
            "bare LF at {i} in a relayed message"
        );
        assert!(
            b != b'\r' || message.get(i + 1) == Some(&b'\n'),
            "bare CR at {i} in a relayed message"
        );
    }
}

/// Any bytes as DATA content (first byte: size limit, second: read size). Reading in one
/// piece and in chunks must agree; the stored copy stays within the limit and has no bare LF or CR.
pub fn smtp_data(data: &[u8]) {
    let (limit, rest) = match data.split_first() {
        Some((b, rest)) => (16 + usize::from(*b) * 8, rest),
        None => (16, data),
    };
    let (chunk, input) = match rest.split_first() {
        Some((b, rest)) => (usize::from(*b % 64).max(1), rest),
        None => (1, rest),
    };

    let mut whole = DataReader::new(limit);
    let mut whole_sink = Vec::new();
    let fed = whole.feed(input, &mut whole_sink);
    assert!(fed.consumed <= input.len());
    assert!(fed.done || fed.consumed == input.len());

    let mut split = DataReader::new(limit);
    let mut split_sink = Vec::new();
    let mut pos = 0;
    let mut done = false;
    while pos < input.len() && !done {
        let end = (pos + chunk).min(input.len());
        let f = split.feed(&input[pos..end], &mut split_sink);
        assert!(f.consumed <= end - pos);
        pos += f.consumed;
        done = f.done;
    }

    assert_eq!(
        fed.done, done,
        "end of data depends on how the input was split"
    );
    assert_eq!(fed.consumed, pos, "consumed bytes depend on the split");
    assert_eq!(whole.size(), split.size());
    assert_eq!(whole.overflowed(), split.overflowed());
    assert_eq!(whole.saw_bare_newline(), split.saw_bare_newline());
    assert_eq!(whole.saw_nul(), split.saw_nul());
    assert_eq!(whole_sink, split_sink, "content depends on the split");
    assert!(whole_sink.len() <= limit);
    if whole.overflowed() {
        assert!(whole_sink.is_empty());
    } else {
        assert_eq!(whole.size(), whole_sink.len() as u64);
        assert_no_bare_newline(&whole_sink);
    }
}
