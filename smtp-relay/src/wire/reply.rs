//! SMTP replies as the application sees them: a code, an enhanced status code (RFC 3463) and
//! text that never carries anything but printable ASCII.

use std::fmt::Write as _;

use crate::policy::{Denial, Rule};

/// One (possibly multi-line) reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code, e.g. `5.7.1`; empty for the greeting and EHLO.
    pub status: &'static str,
    pub lines: Vec<String>,
}

/// Longest reply text line we emit (RFC 5321 allows 512 octets per reply line).
const MAX_TEXT: usize = 400;

impl Reply {
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Self {
        Self {
            code,
            status,
            lines: vec![sanitize(&text.into())],
        }
    }

    pub fn multi(code: u16, lines: Vec<String>) -> Self {
        Self {
            code,
            status: "",
            lines: lines.iter().map(|l| sanitize(l)).collect(),
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// Appends the wire form (CRLF-terminated lines) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut text = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let _ = write!(text, "{}{}", self.code, sep);
            if !self.status.is_empty() {
                let _ = write!(text, "{} ", self.status);
            }
            text.push_str(line);
            text.push_str("\r\n");
        }
        if self.lines.is_empty() {
            let _ = write!(text, "{} \r\n", self.code);
        }
        out.extend_from_slice(text.as_bytes());
    }

    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// The one map from a policy refusal to what the application hears: 452 4.7.0 for a rate
/// (retry later), 552 5.3.4 for size, 550 5.7.1 for any other rule the message breaks
/// (RFC 5321/3463 codes clients already understand). The text names the rule.
impl From<Denial> for Reply {
    fn from(denial: Denial) -> Self {
        let text = format!("policy {}: {}", denial.rule.as_str(), denial.detail);
        if denial.rule.is_rate() {
            Reply::new(452, "4.7.0", text)
        } else if denial.rule == Rule::MaxMessageBytes {
            Reply::new(552, "5.3.4", text)
        } else {
            Reply::new(550, "5.7.1", text)
        }
    }
}

/// Keeps printable ASCII only and bounds the length, so upstream text or an address the app
/// sent can neither break the reply framing nor smuggle a second reply line.
pub fn sanitize(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { ' ' })
        .take(MAX_TEXT)
        .collect();
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_has_enhanced_code() {
        let r = Reply::new(550, "5.7.1", "no");
        assert_eq!(r.to_wire(), b"550 5.7.1 no\r\n");
    }

    #[test]
    fn multi_line_uses_dashes_until_the_last() {
        let r = Reply::multi(250, vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!(r.to_wire(), b"250-a\r\n250-b\r\n250 c\r\n");
    }

    #[test]
    fn text_cannot_inject_a_line() {
        let r = Reply::new(550, "5.1.1", "x\r\n250 2.0.0 ok\u{0}é");
        let wire = r.to_wire();
        assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(wire.is_ascii());
    }
}
