//! The two request bodies the page posts, parsed by hand from a bounded JSON value so that a
//! malformed one is refused with the field named (the "400 with the field named").
//! Nothing here trusts the sizes: every string has a bound before it is used.

use serde_json::{Map, Value};

/// Longest `namespace` (a DNS label).
const MAX_NAMESPACE: usize = 63;
/// Longest `name` (a DNS subdomain).
const MAX_NAME: usize = 253;
/// Longest base64 fields, as the CRD schema allows.
const MAX_WRAPPED_KEY_B64: usize = 8192;
const MAX_NONCE_B64: usize = 64;
const MAX_CIPHERTEXT_B64: usize = 16384;

/// A request body that cannot be used, with the field at fault (`body` for the whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadField {
    pub field: &'static str,
    pub reason: String,
}

impl BadField {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Which link: namespace, name and the token from the URL fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRef {
    pub namespace: String,
    pub name: String,
    pub token: String,
}

/// What the page sends after sealing in the browser: the link, the digest of the associated
/// data it sealed with, and the three base64 envelope fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealBody {
    pub link: LinkRef,
    pub aad_sha256: String,
    pub encrypted_data_key: String,
    pub nonce: String,
    pub ciphertext: String,
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>, BadField> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(BadField::new("body", "expected a JSON object")),
        Err(e) => Err(BadField::new("body", format!("not valid JSON ({e})"))),
    }
}

fn string<'a>(
    map: &'a Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<&'a str, BadField> {
    match map.get(field) {
        None => Err(BadField::new(field, "missing")),
        Some(Value::String(s)) if s.is_empty() => Err(BadField::new(field, "empty")),
        Some(Value::String(s)) if s.len() > max => {
            Err(BadField::new(field, format!("longer than {max} bytes")))
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(BadField::new(field, "expected a string")),
    }
}

fn known_fields(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), BadField> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(_) => Err(BadField::new("body", "has an unknown field")),
        None => Ok(()),
    }
}

fn link(map: &Map<String, Value>) -> Result<LinkRef, BadField> {
    Ok(LinkRef {
        namespace: string(map, "namespace", MAX_NAMESPACE)?.to_owned(),
        name: string(map, "name", MAX_NAME)?.to_owned(),
        // A token longer than this is not one; it is refused as unknown later, not here,
        // so that a tampered token and an unknown one look the same.
        token: string(map, "token", 256)?.to_owned(),
    })
}

const LINK_FIELDS: [&str; 3] = ["namespace", "name", "token"];

/// `{"namespace", "name", "token"}`.
pub fn parse_open(bytes: &[u8]) -> Result<LinkRef, BadField> {
    let map = object(bytes)?;
    known_fields(&map, &LINK_FIELDS)?;
    link(&map)
}

/// The link fields plus `aadSha256`, `encryptedDataKey`, `nonce`, `ciphertext`.
pub fn parse_seal(bytes: &[u8]) -> Result<SealBody, BadField> {
    let map = object(bytes)?;
    known_fields(
        &map,
        &[
            LINK_FIELDS[0],
            LINK_FIELDS[1],
            LINK_FIELDS[2],
            "aadSha256",
            "encryptedDataKey",
            "nonce",
            "ciphertext",
        ],
    )?;
    let link = link(&map)?;
    let aad_sha256 = string(&map, "aadSha256", 64)?;
    if aad_sha256.len() != 64
        || !aad_sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(BadField::new(
            "aadSha256",
            "expected 64 lowercase hex digits",
        ));
    }
    Ok(SealBody {
        link,
        aad_sha256: aad_sha256.to_owned(),
        encrypted_data_key: string(&map, "encryptedDataKey", MAX_WRAPPED_KEY_B64)?.to_owned(),
        nonce: string(&map, "nonce", MAX_NONCE_B64)?.to_owned(),
        ciphertext: string(&map, "ciphertext", MAX_CIPHERTEXT_B64)?.to_owned(),
    })
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
