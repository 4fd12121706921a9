//! The one-time token of a seal-request link (docs/link-sealing.md). 256 bits from the OS
//! CSPRNG, base64url without padding. The cluster stores only its SHA-256; the registration
//! page compares digests in constant time, so the time a comparison takes says nothing about
//! how many leading bytes of a guess were right.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::Error;

/// Random bytes in a token: 256 bits, twice the 128 the issue asks for.
pub const TOKEN_BYTES: usize = 32;
/// Length of the base64url text of a token.
pub const TOKEN_CHARS: usize = 43;

/// A fresh link token. Zeroized on drop; never logged (no `Display`, redacted `Debug`).
pub struct LinkToken(Zeroizing<String>);

impl LinkToken {
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
        aws_lc_rs::rand::fill(bytes.as_mut())
            .map_err(|_| Error::Crypto("the system random generator failed"))?;
        Ok(Self(Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()))))
    }

    /// The token text, for the link only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the cluster stores: lowercase hex SHA-256 of the token text.
    pub fn sha256_hex(&self) -> String {
        token_sha256_hex(&self.0)
    }
}

impl std::fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkToken([REDACTED])")
    }
}

/// Lowercase hex SHA-256 of a token's text.
pub fn token_sha256_hex(token: &str) -> String {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// True when `token` has the shape of a generated token: 43 base64url characters.
pub fn is_token_shaped(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `presented` hashes to `stored_hex`, compared in constant time over the 32 digest
/// bytes. A malformed stored value matches nothing.
pub fn token_matches(presented: &str, stored_hex: &str) -> bool {
    let Some(stored) = decode_hex32(stored_hex) else {
        return false;
    };
    let d = digest::digest(&digest::SHA256, presented.as_bytes());
    aws_lc_rs::constant_time::verify_slices_are_equal(d.as_ref(), &stored).is_ok()
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// The link the owner opens: the page at `base`, with namespace, name and token in the URL
/// fragment. Browsers never send a fragment to the server, so the token stays out of access
/// logs, proxies and Referer headers; the page posts it in a request body.
pub fn link_url(base: &str, namespace: &str, name: &str, token: &LinkToken) -> String {
    format!(
        "{}/#{namespace}/{name}/{}",
        base.trim_end_matches('/'),
        token.expose()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tokens_are_distinct_shaped_and_match_only_their_hash() {
        let a = LinkToken::generate().unwrap();
        let b = LinkToken::generate().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(is_token_shaped(a.expose()), "{}", a.expose());
        assert!(token_matches(a.expose(), &a.sha256_hex()));
        assert!(!token_matches(b.expose(), &a.sha256_hex()));
        assert!(!token_matches(a.expose(), &a.sha256_hex().to_uppercase()));
        assert!(!token_matches(a.expose(), ""));
        assert_eq!(format!("{a:?}"), "LinkToken([REDACTED])");
        let url = link_url("https://x.test/", "shop", "billing", &a);
        assert_eq!(url, format!("https://x.test/#shop/billing/{}", a.expose()));
    }

    proptest! {
        /// Any one-character change of a token (a tampered link) fails the check.
        #[test]
        fn every_single_character_change_is_refused(pos in 0usize..TOKEN_CHARS, c in "[A-Za-z0-9_-]") {
            let token = LinkToken::generate().unwrap();
            let stored = token.sha256_hex();
            let mut chars: Vec<char> = token.expose().chars().collect();
            let replacement = c.chars().next().unwrap();
            prop_assume!(chars[pos] != replacement);
            chars[pos] = replacement;
            let tampered: String = chars.into_iter().collect();
            prop_assert!(!token_matches(&tampered, &stored));
        }

        /// Arbitrary presented and stored strings never panic and match only when equal hashes.
        #[test]
        fn arbitrary_inputs_match_only_their_own_hash(presented in ".{0,80}", stored in ".{0,80}") {
            prop_assert_eq!(token_matches(&presented, &stored), token_sha256_hex(&presented) == stored);
            prop_assert!(token_matches(&presented, &token_sha256_hex(&presented)));
        }
    }
}
