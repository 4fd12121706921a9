//! The headers that name the sender: every From, Sender, Resent-From and Resent-Sender field
//! of the header section, each parsed strictly (rfc5322.rs), so the sender policy sees the
//! addresses that the receiving server and mail clients will see, or refuses the message.

use std::fmt;

use mailcred_core::policy::Address;

pub use super::rfc5322::Problem;
use super::rfc5322::address_list;

/// A header field whose addresses the sender policy checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderField {
    From,
    Sender,
    ResentFrom,
    ResentSender,
}

impl SenderField {
    fn from_name(name: &[u8]) -> Option<Self> {
        let name = std::str::from_utf8(name).ok()?;
        [
            ("From", SenderField::From),
            ("Sender", SenderField::Sender),
            ("Resent-From", SenderField::ResentFrom),
            ("Resent-Sender", SenderField::ResentSender),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, f)| f)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SenderField::From => "From",
            SenderField::Sender => "Sender",
            SenderField::ResentFrom => "Resent-From",
            SenderField::ResentSender => "Resent-Sender",
        }
    }
}

impl fmt::Display for SenderField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Addresses named in the sender fields, or the field that cannot be trusted and why.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderSenders {
    Addresses(Vec<(SenderField, Address)>),
    /// A sender field is present but does not parse strictly (`None`: it names no address).
    Unparsable(SenderField, Option<Problem>),
    /// A line of the header section is no field (no colon, or an empty or non-ASCII name):
    /// readers disagree on what such a line starts or ends, so nothing after it is trusted.
    Malformed,
}

/// Reads the header section of `message` (everything before the first empty line; the DATA
/// reader has already made every line end CRLF).
pub fn header_senders(message: &[u8]) -> HeaderSenders {
    let mut out = Vec::new();
    let Some(fields) = fields(header_section(message)) else {
        return HeaderSenders::Malformed;
    };
    for (name, value) in fields {
        let Some(field) = SenderField::from_name(&name) else {
            continue;
        };
        match address_list(&value) {
            Ok(list) if list.is_empty() => return HeaderSenders::Unparsable(field, None),
            Ok(list) => out.extend(list.into_iter().map(|a| (field, a))),
            Err(problem) => return HeaderSenders::Unparsable(field, Some(problem)),
        }
    }
    HeaderSenders::Addresses(out)
}

fn header_section(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\r\n") {
        return &[];
    }
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(message.len());
    &message[..end]
}

/// The fields, unfolded: a line starting with white space continues the previous one. The
/// name is what precedes the first colon, without the white space some writers put before it
/// (`From :` is read as From by lenient readers, so it is checked as From). `None` when a
/// line is no field.
fn fields(section: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for line in section.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match (line.first(), fields.last_mut()) {
            (None, _) => {}
            (Some(b' ' | b'\t'), Some((_, value))) => value.extend_from_slice(line),
            // The name and its colon are on the field's first line: a reader that unfolds
            // differently must not find another field name in a continuation.
            _ => {
                let colon = line.iter().position(|&b| b == b':')?;
                let name = line[..colon].trim_ascii_end();
                if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
                    return None;
                }
                fields.push((name.to_vec(), line[colon + 1..].to_vec()));
            }
        }
    }
    Some(fields)
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
