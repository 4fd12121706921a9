use std::sync::Arc;

use base64::Engine as _;
use proptest::prelude::*;

use super::*;
use crate::testkit::{FailingSource, StaticDirectory};

fn plain(authzid: &[u8], user: &[u8], password: &[u8]) -> Vec<u8> {
    let raw = [authzid, b"\0", user, b"\0", password].concat();
    base64::engine::general_purpose::STANDARD
        .encode(raw)
        .into_bytes()
}

fn directory_with(name: &str) -> StaticDirectory {
    let directory = StaticDirectory::new();
    directory.insert(
        name,
        Arc::new(FailingSource::new(|| crate::Error::NotLoaded)),
    );
    directory
}

#[test]
fn sasl_plain_fields() {
    let login = LocalLogin::from_sasl_plain(&plain(b"", b"acme", b"tok")).expect("decodes");
    assert_eq!(
        (&**login.authzid, &**login.user, &**login.password),
        (&b""[..], &b"acme"[..], &b"tok"[..])
    );
    // The password may itself hold a NUL: only the first two separate fields.
    let login = LocalLogin::from_sasl_plain(&plain(b"z", b"u", b"p\0q")).expect("decodes");
    assert_eq!(&**login.password, b"p\0q");
}

#[test]
fn sasl_plain_refusals() {
    assert!(LocalLogin::from_sasl_plain(b"").is_none(), "empty response");
    assert!(LocalLogin::from_sasl_plain(b"not base64!").is_none());
    let two_fields = base64::engine::general_purpose::STANDARD.encode(b"user\0pass");
    assert!(LocalLogin::from_sasl_plain(two_fields.as_bytes()).is_none());
}

#[test]
fn token_comparison() {
    assert!(token_matches(b"token", b"token"));
    assert!(!token_matches(b"token", b"tokeN"));
    assert!(!token_matches(b"token", b"toke"));
}

#[test]
fn account_pick_outcomes() {
    let directory = directory_with("acme");
    let case = |authzid: &[u8], user: &[u8], password: &[u8]| {
        pick_account(
            &directory,
            b"tok",
            &LocalLogin::new(authzid, user, password),
        )
        .0
    };
    assert_eq!(case(b"", b"acme", b"tok"), AccountLogin::Accepted);
    assert_eq!(case(b"acme", b"acme", b"tok"), AccountLogin::Accepted);
    assert_eq!(case(b"", b"acme", b"bad"), AccountLogin::WrongToken);
    assert_eq!(case(b"", b"other", b"bad"), AccountLogin::WrongToken);
    assert_eq!(case(b"other", b"acme", b"tok"), AccountLogin::WrongAuthzid);
    assert_eq!(case(b"", b"other", b"tok"), AccountLogin::UnknownAccount);
    assert_eq!(case(b"", b"\xff", b"tok"), AccountLogin::UnknownAccount);
    // No token configured: nothing is accepted.
    let none = pick_account(&directory, b"", &LocalLogin::new(b"", b"acme", b""));
    assert_eq!(none.0, AccountLogin::WrongToken);
    assert!(none.1.is_none());
}

proptest! {
    #[test]
    fn sasl_plain_round_trips(
        authzid in proptest::collection::vec(1u8..=255, 0..40),
        user in proptest::collection::vec(1u8..=255, 0..40),
        password in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let login = LocalLogin::from_sasl_plain(&plain(&authzid, &user, &password)).expect("decodes");
        prop_assert_eq!(&**login.authzid, &authzid[..]);
        prop_assert_eq!(&**login.user, &user[..]);
        prop_assert_eq!(&**login.password, &password[..]);
    }

    #[test]
    fn sasl_plain_never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = LocalLogin::from_sasl_plain(&input);
    }

    #[test]
    fn token_matches_is_equality(a in proptest::collection::vec(any::<u8>(), 0..24), b in proptest::collection::vec(any::<u8>(), 0..24)) {
        prop_assert_eq!(token_matches(&a, &b), a == b);
    }

    /// Only the right token, a known name and a matching (or empty) authzid pick an account.
    #[test]
    fn only_a_full_match_picks(
        user in "[a-z]{1,6}",
        authzid in prop_oneof![Just(String::new()), "[a-z]{1,6}"],
        password in prop_oneof![Just("tok".to_string()), "[a-z]{0,5}"],
    ) {
        let directory = directory_with("acme");
        let (outcome, picked) = pick_account(
            &directory,
            b"tok",
            &LocalLogin::new(authzid.as_bytes(), user.as_bytes(), password.as_bytes()),
        );
        let expected = password == "tok" && user == "acme" && (authzid.is_empty() || authzid == user);
        prop_assert_eq!(outcome == AccountLogin::Accepted, expected);
        prop_assert_eq!(picked.map(|p| p.name), expected.then(|| user.clone()));
    }
}
