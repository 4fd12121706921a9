//! Modified UTF-7 (RFC 3501 §5.1.3), the spelling of mailbox names on the wire. Decoding is
//! strict (no encoded printable ASCII, no stray bits): a name that two decoders could read
//! differently is refused, never guessed at.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn b64_value(c: u8) -> Option<u32> {
    B64.iter().position(|&x| x == c).map(|v| v as u32)
}

/// Strict modified UTF-7 decoding; `None` for anything RFC 3501 does not allow.
pub fn decode_mutf7(wire: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(wire.len());
    let mut i = 0;
    let mut after_encoded = false;
    while i < wire.len() {
        let c = wire[i];
        if !(0x20..=0x7e).contains(&c) {
            return None;
        }
        if c != b'&' {
            out.push(c as char);
            i += 1;
            after_encoded = false;
            continue;
        }
        let end = i + 1 + wire[i + 1..].iter().position(|&b| b == b'-')?;
        let encoded = &wire[i + 1..end];
        i = end + 1;
        if encoded.is_empty() {
            out.push('&');
            after_encoded = false;
            continue;
        }
        // Two adjacent encoded runs are a second spelling of one run.
        if after_encoded {
            return None;
        }
        after_encoded = true;
        let mut units = Vec::with_capacity(encoded.len() * 6 / 16);
        let (mut acc, mut bits) = (0u32, 0u32);
        for &b in encoded {
            acc = (acc << 6) | b64_value(b)?;
            bits += 6;
            if bits >= 16 {
                bits -= 16;
                units.push((acc >> bits) as u16);
                acc &= (1 << bits) - 1;
            }
        }
        // Leftover bits must be padding: fewer than 6 and all zero.
        if bits >= 6 || acc != 0 || units.is_empty() {
            return None;
        }
        for ch in char::decode_utf16(units.iter().copied()) {
            let ch = ch.ok()?;
            if (' '..='~').contains(&ch) {
                return None;
            }
            out.push(ch);
        }
    }
    Some(out)
}

/// Modified UTF-7 encoding (the inverse of [`decode_mutf7`]).
pub fn encode_mutf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let (mut acc, mut bits) = (0u32, 0u32);
        for &u in pending.iter() {
            acc = (acc << 16) | u32::from(u);
            bits += 16;
            while bits >= 6 {
                bits -= 6;
                out.push(B64[((acc >> bits) & 0x3f) as usize] as char);
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            out.push(B64[((acc << (6 - bits)) & 0x3f) as usize] as char);
        }
        out.push('-');
        pending.clear();
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_examples() {
        assert_eq!(
            decode_mutf7(b"~peter/mail/&U,BTFw-/&ZeVnLIqe-").as_deref(),
            Some("~peter/mail/台北/日本語")
        );
        assert_eq!(decode_mutf7(b"Entw&APw-rfe").as_deref(), Some("Entwürfe"));
        assert_eq!(
            decode_mutf7(b"Tom &- Jerry").as_deref(),
            Some("Tom & Jerry")
        );
        assert_eq!(encode_mutf7("台北"), "&U,BTFw-");
    }

    #[test]
    fn strict_decoding_refuses_ambiguity() {
        // "I" encoded: printable ASCII must not be encoded.
        assert_eq!(decode_mutf7(b"&AEk-NBOX"), None);
        assert_eq!(decode_mutf7(b"abc&U,BTFw"), None, "unterminated");
        assert_eq!(decode_mutf7(b"&U,BTF-"), None, "stray bits");
        assert_eq!(decode_mutf7(b"caf\xc3\xa9"), None, "8-bit");
        assert_eq!(decode_mutf7(b"&2D0-"), None, "lone surrogate");
        assert_eq!(decode_mutf7(b"a\tb"), None);
    }

    proptest! {
        #[test]
        fn mutf7_round_trips(name in "\\PC{0,24}") {
            let wire = encode_mutf7(&name);
            prop_assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode_mutf7(wire.as_bytes()), Some(name));
        }

        #[test]
        fn decode_never_panics_and_is_canonical(wire in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Some(name) = decode_mutf7(&wire) {
                // Whatever decodes has exactly one wire form: no second spelling of a name.
                let again = encode_mutf7(&name);
                prop_assert_eq!(again.as_bytes(), &wire[..]);
            }
        }

    }
}
