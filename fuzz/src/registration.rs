//! The registration API's request parser (sidecar/src/registration/request.rs, with the
//! field, policy and error files it uses), compiled here from the sidecar's own sources: the
//! sidecar is a binary crate, so the files are included rather than linked.

#[path = "../../sidecar/src/registration/errors.rs"]
#[allow(dead_code)]
mod errors;
#[path = "../../sidecar/src/registration/fields.rs"]
mod fields;
#[path = "../../sidecar/src/registration/policy_check.rs"]
mod policy_check;
#[path = "../../sidecar/src/registration/request.rs"]
#[allow(dead_code)]
mod request;

/// Any bytes as a `POST /v1/accounts` body: an answer, never a panic; and an error never
/// carries the password the body held.
pub fn registration_request(data: &[u8]) {
    match request::parse(data) {
        Ok(r) => {
            assert!(r.smtp.is_some() || r.imap.is_some());
            assert!(!r.password.expose().is_empty());
        }
        Err(e) => {
            let body = e.body().to_string();
            if let Some(password) = password_of(data)
                && password.len() >= 8
            {
                assert!(!body.contains(&password), "{body}");
            }
        }
    }
}

fn password_of(data: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    value.get("password")?.as_str().map(str::to_owned)
}
