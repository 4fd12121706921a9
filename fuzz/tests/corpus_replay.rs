//! Replays every committed corpus input through its target: the fuzz smoke of the test suite.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        run(&data);
        count += 1;
    }
    assert!(count > 0, "the corpus of {target} is empty");
}

#[test]
fn envelope_yaml_corpus() {
    replay("envelope_yaml", mailcred_fuzz::envelope::envelope_yaml);
}

#[test]
fn envelope_fields_corpus() {
    replay("envelope_fields", mailcred_fuzz::envelope::envelope_fields);
}

#[test]
fn smtp_session_corpus() {
    replay("smtp_session", mailcred_fuzz::smtp::smtp_session);
}

#[test]
fn smtp_data_corpus() {
    replay("smtp_data", mailcred_fuzz::smtp::smtp_data);
}

#[test]
fn smtp_headers_corpus() {
    replay("smtp_headers", mailcred_fuzz::headers::smtp_headers);
}

/// The header harness reaches the verdict: the plain seed is accepted, every attack seed of
/// issue #10 (items 1 and 2) is refused.
#[test]
fn smtp_headers_harness_accepts_plain_mail_only() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/smtp_headers");
    let accepts = |name: &str| {
        let data = std::fs::read(dir.join(name)).unwrap();
        mailcred_fuzz::headers::relay_accepts(&data)
    };
    assert!(accepts("plain-from"));
    assert!(accepts("group"));
    for attack in [
        "encoded-word-angle",
        "encoded-word-hex",
        "encoded-local",
        "quoted-local",
        "escaped-quote",
        "obs-route",
        "comment",
        "kelvin",
        "folded",
    ] {
        assert!(!accepts(attack), "{attack} accepted");
    }
}

#[test]
fn imap_command_corpus() {
    replay("imap_command", mailcred_fuzz::imap::imap_command);
}

#[test]
fn imap_response_corpus() {
    replay("imap_response", mailcred_fuzz::imap::imap_response);
}

/// The harnesses reach what they claim to fuzz: a valid message is delivered, a policy
/// violation and a smuggled one are not.
#[test]
fn smtp_session_harness_delivers_valid_mail_only() {
    let seed = |name: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("corpus/smtp_session")
                .join(name),
        )
        .unwrap()
    };
    assert_eq!(
        mailcred_fuzz::smtp::smtp_session_delivered(&seed("ehlo-send")),
        1
    );
    assert_eq!(
        mailcred_fuzz::smtp::smtp_session_delivered(&seed("denied-sender")),
        0
    );
    // The smuggled second transaction is part of the first message's body, never its own.
    assert_eq!(
        mailcred_fuzz::smtp::smtp_session_delivered(&seed("smuggling")),
        1
    );
}

/// The IMAP harness reaches the relay phase: LIST lines are filtered by the policy and the
/// upstream's AUTH/COMPRESS capabilities are replaced.
#[test]
fn imap_response_harness_reaches_the_filter() {
    let seed = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/imap_response/list-filter"),
    )
    .unwrap();
    let got = String::from_utf8(mailcred_fuzz::imap::imap_response_session(&seed)).unwrap();
    assert!(
        got.contains("* LIST (\\HasNoChildren) \"/\" INBOX\r\n"),
        "{got}"
    );
    assert!(got.contains("Shared/x"), "{got}");
    assert!(!got.contains("Secret"), "{got}");
    assert!(got.contains("* STATUS INBOX"), "{got}");
    let login = got.lines().find(|l| l.starts_with("a0 OK")).unwrap();
    assert!(
        !login.contains("AUTH=") && !login.contains("COMPRESS"),
        "{login}"
    );
}

#[test]
fn registration_request_corpus() {
    replay(
        "registration_request",
        mailcred_fuzz::registration::registration_request,
    );
}

#[test]
fn sasl_plain_corpus() {
    replay("sasl_plain", mailcred_fuzz::sasl::sasl_plain);
}

/// The harness reaches the decoder's both answers: well-formed seeds decode to their fields
/// (a NUL after the second one stays in the password), malformed ones are refused.
#[test]
fn sasl_plain_seeds_decode_as_written() {
    use mailcred_core::local_login::LocalLogin;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/sasl_plain");
    let decode = |name: &str| LocalLogin::from_sasl_plain(&std::fs::read(dir.join(name)).unwrap());
    let login = decode("with-authzid").expect("with-authzid decodes");
    assert_eq!(
        (&login.authzid[..], &login.user[..], &login.password[..]),
        (&b"admin"[..], &b"app"[..], &b"token"[..])
    );
    let login = decode("nul-in-password").expect("nul-in-password decodes");
    assert_eq!(&login.password[..], b"pass\0word");
    assert!(decode("empty-fields").is_some());
    for refused in ["no-nul", "bad-base64", "no-padding", "empty"] {
        assert!(decode(refused).is_none(), "{refused} decoded");
    }
}
