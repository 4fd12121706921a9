//! Removing the secret from upstream text. A hostile or careless upstream server can echo what
//! the proxy sent it (`NO you sent: m3 LOGIN user pass`), in any response and at any time.
//! Whatever the proxy relays to the application or writes to a log passes through a
//! [`Scrubber`] that knows every form in which the proxy ever sent the secret, and replaces
//! each occurrence with as many `*` (so literal lengths stay right). The fill byte is one that
//! no form contains (`*` unless the password has one), so a replacement never makes a new
//! occurrence and one pass per form leaves none.

use base64::Engine as _;
use zeroize::Zeroizing;

/// The secret's wire forms. Cheap to search: a handful of `memmem` passes.
#[derive(Default)]
pub struct Scrubber {
    forms: Vec<Zeroizing<Vec<u8>>>,
    longest: usize,
    fill: u8,
}

/// Fill bytes in order of preference; NUL (never in a password, quoted string or base64) last.
const FILL_BYTES: &[u8] = b"*#~?!%^_-.:;@$&|=0";

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("forms", &self.forms.len())
            .finish()
    }
}

impl Scrubber {
    /// Every form in which the proxy sends `password` for `username`: plain (LOGIN literal),
    /// IMAP-quoted, and the base64 of SASL PLAIN's `\0user\0pass`.
    pub fn for_password(username: &str, password: &[u8]) -> Self {
        let mut s = Self::default();
        s.add(password.to_vec());
        s.add(quoted(password));
        let mut plain = Zeroizing::new(Vec::with_capacity(username.len() + password.len() + 2));
        plain.push(0);
        plain.extend_from_slice(username.as_bytes());
        plain.push(0);
        plain.extend_from_slice(password);
        s.add(
            base64::engine::general_purpose::STANDARD
                .encode(&*plain)
                .into_bytes(),
        );
        s
    }

    /// Adds another form, e.g. an OAuth access token and its XOAUTH2 / OAUTHBEARER base64,
    /// once the proxy sends those.
    pub fn add(&mut self, form: Vec<u8>) {
        let form = Zeroizing::new(form);
        if form.is_empty() || self.forms.iter().any(|f| **f == *form) {
            return;
        }
        self.longest = self.longest.max(form.len());
        self.forms.push(form);
        self.fill = FILL_BYTES
            .iter()
            .copied()
            .find(|b| !self.forms.iter().any(|f| f.contains(b)))
            .unwrap_or(0);
    }

    /// Bytes to hold back at the end of a stream so that a form split across two writes is
    /// still seen whole.
    pub fn overlap(&self) -> usize {
        self.longest.saturating_sub(1)
    }

    /// Replaces every occurrence of every form with fill bytes. True when something was
    /// replaced.
    pub fn scrub_in_place(&self, data: &mut [u8]) -> bool {
        let mut hit = false;
        for form in &self.forms {
            let mut from = 0;
            while let Some(at) = memchr::memmem::find(&data[from..], form) {
                let start = from + at;
                data[start..start + form.len()].fill(self.fill);
                from = start + form.len();
                hit = true;
            }
        }
        hit
    }

    /// A scrubbed copy, for text that goes to a log or into an error.
    pub fn scrubbed(&self, data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        self.scrub_in_place(&mut out);
        out
    }
}

/// The secret as an IMAP quoted string would carry it (without the quotes).
fn quoted(secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(secret.len() + 4);
    for &c in secret {
        if matches!(c, b'"' | b'\\') {
            out.push(b'\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_form_is_replaced_and_lengths_stay() {
        let s = Scrubber::for_password("u@example.test", br#"p"a\ss"#);
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"\0u@example.test\0p\"a\\ss");
        let text = format!(r#"NO you sent LOGIN "u" "p\"a\\ss" and p"a\ss and {b64}."#);
        let mut data = text.clone().into_bytes();
        assert!(s.scrub_in_place(&mut data));
        let out = String::from_utf8(data).unwrap();
        assert_eq!(out.len(), text.len());
        assert!(!out.contains(r#"p"a\ss"#) && !out.contains(r#"p\"a\\ss"#));
        assert!(!out.contains(&b64));
        assert!(out.starts_with("NO you sent LOGIN \"u\" \""));
    }

    proptest! {
        /// Wherever the secret sits in any text, nothing of the form survives.
        #[test]
        fn no_occurrence_survives(pass in "[ -~*#]{1,24}", before in proptest::collection::vec(any::<u8>(), 0..64), after in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = Scrubber::for_password("user", pass.as_bytes());
            let mut data = before.clone();
            data.extend_from_slice(pass.as_bytes());
            data.extend_from_slice(&after);
            let len = data.len();
            s.scrub_in_place(&mut data);
            prop_assert_eq!(data.len(), len);
            prop_assert!(memchr::memmem::find(&data, pass.as_bytes()).is_none());
            for form in &s.forms {
                prop_assert!(memchr::memmem::find(&data, form).is_none());
            }
        }
    }
}
