//! SASL PLAIN at the sidecar's own listeners (`mailcred_core::local_login`), the first bytes
//! an application's login reaches: SMTP AUTH PLAIN and IMAP AUTHENTICATE PLAIN both decode
//! through it.

use base64::Engine as _;
use mailcred_core::local_login::{LocalLogin, token_matches};

/// Any bytes as a base64 PLAIN response: an answer, never a panic. A decoded login is the
/// response split at its first two NULs and nothing else: joined again it gives back exactly
/// the decoded bytes, so no field is lost, moved or invented.
pub fn sasl_plain(data: &[u8]) {
    let Some(login) = LocalLogin::from_sasl_plain(data) else {
        return;
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("a decoded login came from valid base64");
    let mut joined = login.authzid.to_vec();
    joined.push(0);
    joined.extend_from_slice(&login.user);
    joined.push(0);
    joined.extend_from_slice(&login.password);
    assert_eq!(joined, decoded);
    assert!(!login.authzid.contains(&0) && !login.user.contains(&0));
    // The token check answers equality, whatever the bytes.
    assert!(token_matches(&login.password, &login.password));
    assert_eq!(
        token_matches(&login.user, &login.password),
        login.user[..] == login.password[..]
    );
}
