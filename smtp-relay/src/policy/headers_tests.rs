use super::*;
use proptest::prelude::*;

fn senders(m: &str) -> Result<Vec<String>, (SenderField, Option<Problem>)> {
    match header_senders(m.as_bytes()) {
        HeaderSenders::Addresses(list) => {
            Ok(list.into_iter().map(|(_, a)| a.to_string()).collect())
        }
        HeaderSenders::Unparsable(f, p) => Err((f, p)),
        HeaderSenders::Malformed => Err((SenderField::From, Some(Problem::Syntax("malformed")))),
    }
}

#[test]
fn from_and_sender_are_collected() {
    let h = senders(
        "From: \"A\" <a@x.test>, b@y.test\r\nSender: s@z.test\r\nSubject: hi\r\n\r\nFrom: body@evil.test\r\n",
    );
    assert_eq!(
        h,
        Ok(vec![
            "a@x.test".into(),
            "b@y.test".into(),
            "s@z.test".into()
        ])
    );
}

#[test]
fn display_name_that_looks_like_an_address_is_not_the_address() {
    let h = senders("From: \"ok@allowed.test\" <evil@other.test>\r\n\r\n");
    assert_eq!(h, Ok(vec!["evil@other.test".into()]));
}

#[test]
fn every_from_header_counts() {
    let h = senders("From: ok@allowed.test\r\nFrom: evil@other.test\r\n\r\nx");
    assert_eq!(
        h,
        Ok(vec!["ok@allowed.test".into(), "evil@other.test".into()])
    );
}

#[test]
fn encoded_words_in_names_are_fine() {
    let h = senders("From: =?utf-8?q?J=C3=B6rg?= <j@x.test>\r\n\r\n");
    assert_eq!(h, Ok(vec!["j@x.test".into()]));
}

#[test]
fn from_without_address_is_unparsable() {
    assert!(matches!(
        senders("From: nobody\r\n\r\n"),
        Err((SenderField::From, Some(_)))
    ));
    assert_eq!(
        senders("From: undisclosed:;\r\n\r\n"),
        Err((SenderField::From, None))
    );
}

#[test]
fn no_headers_means_no_addresses() {
    assert_eq!(senders("Subject: x\r\n\r\n"), Ok(vec![]));
}

#[test]
fn resent_fields_folding_and_spaced_names_are_checked() {
    assert_eq!(
        senders("Resent-From: r@x.test\r\nRESENT-SENDER: q@x.test\r\n\r\n"),
        Ok(vec!["r@x.test".into(), "q@x.test".into()])
    );
    assert_eq!(
        senders("From: Alice\r\n <a@x.test>\r\nFrom : e@evil.test\r\n\r\n"),
        Ok(vec!["a@x.test".into(), "e@evil.test".into()])
    );
    assert_eq!(
        senders("X: y\r\n\tFrom: e@evil.test\r\n\r\n"),
        Ok(vec![]),
        "a continuation is no field"
    );
}

/// Found by the smtp_headers fuzz target: mail-parser reads `:From:` as a From field, the
/// relay saw a field with an empty name. Lines that are no field refuse the section.
#[test]
fn lines_that_are_no_field_make_the_section_malformed() {
    for m in [
        ":From: =?utf-8?q?<ev\u{ff}\r\n\u{ff}\r\n",
        "Subject: x\r\nno colon here\r\nFrom: alice@example.test\r\n\r\n",
        "Subject: x\r\nFr\u{f6}m: evil@evil.test\r\n\r\n",
        "Sub ject: x\r\n\r\n",
        " From: a@x.test\r\n\r\n",
        "To: a@x.test\r\n`t\r\n\t:W\r\n\tFrom: evil@evil.test\r\n\r\n",
    ] {
        assert_eq!(
            header_senders(m.as_bytes()),
            HeaderSenders::Malformed,
            "{m:?}"
        );
    }
    let crash = b":From: =?utf-8?q?<ev\xff\r\n\xff\r\n";
    assert_eq!(header_senders(crash), HeaderSenders::Malformed);
    // Second find: a colon-less line whose continuation has a colon, then a folded From.
    let crash = b"TO: x\r\n\tb\r\n`t\r\n\t:W,vi@.e.test\r\n\tFrom: a@corp.test,\xff:W\r\n";
    assert_eq!(header_senders(crash), HeaderSenders::Malformed);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = header_senders(&bytes);
    }
}
