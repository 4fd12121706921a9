//! The From and Sender headers of a message, read with `mail-parser` (RFC 5322 address lists,
//! groups, RFC 2047 display names) so the sender policy sees the addresses a mail client shows.

use mail_parser::{HeaderName, HeaderValue, MessageParser};

/// Addresses named in every From and Sender header, or why they cannot be trusted.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderSenders {
    Addresses(Vec<String>),
    /// A From/Sender header is present but names no parsable address.
    Unparsable(&'static str),
}

/// Reads the header section of `message` (everything before the first empty line).
pub fn header_senders(message: &[u8]) -> HeaderSenders {
    let end = header_end(message);
    let header = &message[..end];
    let Some(parsed) = MessageParser::new().parse_headers(header) else {
        return HeaderSenders::Addresses(Vec::new());
    };
    let mut out = Vec::new();
    for (name, label) in [(HeaderName::From, "From"), (HeaderName::Sender, "Sender")] {
        for value in parsed.header_values(name) {
            let HeaderValue::Address(address) = value else {
                return HeaderSenders::Unparsable(label);
            };
            let mut any = false;
            for addr in address.iter() {
                match addr.address() {
                    Some(a) => {
                        any = true;
                        out.push(a.to_string());
                    }
                    None => return HeaderSenders::Unparsable(label),
                }
            }
            if !any {
                return HeaderSenders::Unparsable(label);
            }
        }
    }
    HeaderSenders::Addresses(out)
}

fn header_end(message: &[u8]) -> usize {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(message.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn senders(m: &str) -> HeaderSenders {
        header_senders(m.as_bytes())
    }

    #[test]
    fn from_and_sender_are_collected() {
        let h = senders(
            "From: \"A\" <a@x.test>, b@y.test\r\nSender: s@z.test\r\nSubject: hi\r\n\r\nFrom: body@evil.test\r\n",
        );
        assert_eq!(
            h,
            HeaderSenders::Addresses(vec![
                "a@x.test".into(),
                "b@y.test".into(),
                "s@z.test".into()
            ])
        );
    }

    #[test]
    fn display_name_that_looks_like_an_address_is_not_the_address() {
        let h = senders("From: \"ok@allowed.test\" <evil@other.test>\r\n\r\n");
        assert_eq!(h, HeaderSenders::Addresses(vec!["evil@other.test".into()]));
    }

    #[test]
    fn every_from_header_counts() {
        let h = senders("From: ok@allowed.test\r\nFrom: evil@other.test\r\n\r\nx");
        assert_eq!(
            h,
            HeaderSenders::Addresses(vec!["ok@allowed.test".into(), "evil@other.test".into()])
        );
    }

    #[test]
    fn encoded_words_in_names_are_fine() {
        let h = senders("From: =?utf-8?q?J=C3=B6rg?= <j@x.test>\r\n\r\n");
        assert_eq!(h, HeaderSenders::Addresses(vec!["j@x.test".into()]));
    }

    #[test]
    fn from_without_address_is_unparsable() {
        assert_eq!(
            senders("From: nobody\r\n\r\n"),
            HeaderSenders::Unparsable("From")
        );
    }

    #[test]
    fn no_headers_means_no_addresses() {
        assert_eq!(
            senders("Subject: x\r\n\r\n"),
            HeaderSenders::Addresses(vec![])
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = header_senders(&bytes);
        }
    }
}
