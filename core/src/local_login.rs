//! The application's login at the sidecar's own listeners, shared by the SMTP relay (AUTH)
//! and the IMAP proxy (LOGIN, AUTHENTICATE PLAIN): SASL PLAIN decoding, the local-token
//! comparison and the account pick of account-set mode. What the application sends here is
//! the local token (and in account-set mode an account's name), never an upstream secret;
//! the token still is a secret of the pod, so every copy is zeroized and compared in
//! constant time.

use std::sync::Arc;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::accounts::AccountDirectory;
use crate::credential::{CredentialSource, UsableCredential};

/// What the application logged in with.
pub struct LocalLogin {
    /// SASL PLAIN's authorization id (empty for IMAP LOGIN and SMTP AUTH LOGIN).
    pub authzid: Zeroizing<Vec<u8>>,
    /// The authentication id: the account's name in account-set mode, ignored otherwise.
    pub user: Zeroizing<Vec<u8>>,
    /// The local token.
    pub password: Zeroizing<Vec<u8>>,
}

impl LocalLogin {
    pub fn new(authzid: &[u8], user: &[u8], password: &[u8]) -> Self {
        Self {
            authzid: Zeroizing::new(authzid.to_vec()),
            user: Zeroizing::new(user.to_vec()),
            password: Zeroizing::new(password.to_vec()),
        }
    }

    /// A SASL PLAIN response (`authzid NUL authcid NUL passwd`, RFC 4616) in base64; `None`
    /// when it is not base64 or has fewer than three fields. An empty input is an empty
    /// response, which has no fields.
    pub fn from_sasl_plain(encoded: &[u8]) -> Option<Self> {
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?,
        );
        let mut parts = decoded.splitn(3, |&b| b == 0);
        let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
        Some(Self::new(authzid, user, password))
    }
}

/// Whether `given` is `token`, in time that depends on the length only.
pub fn token_matches(token: &[u8], given: &[u8]) -> bool {
    // aws-lc's CRYPTO_memcmp: a hand-written XOR fold is one optimiser pass away from an
    // early exit.
    aws_lc_rs::constant_time::verify_slices_are_equal(token, given).is_ok()
}

/// How an account-set login ended; `as_str` is the metric label and the log field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountLogin {
    Accepted,
    WrongToken,
    /// The directory has no such account for this pod (unknown, not shared with the pod's
    /// ServiceAccount, or its lifetime ended).
    UnknownAccount,
    /// An authorization id other than the account's name.
    WrongAuthzid,
}

impl AccountLogin {
    pub const ALL: [AccountLogin; 4] = [
        AccountLogin::Accepted,
        AccountLogin::WrongToken,
        AccountLogin::UnknownAccount,
        AccountLogin::WrongAuthzid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountLogin::Accepted => "accepted",
            AccountLogin::WrongToken => "wrong_token",
            AccountLogin::UnknownAccount => "unknown_account",
            AccountLogin::WrongAuthzid => "wrong_authzid",
        }
    }
}

/// The account a login picked, with its source as the directory had it then.
pub struct PickedAccount {
    pub name: String,
    pub source: Arc<dyn CredentialSource>,
}

/// Checks an account-set login. Every refusal takes the same path (the directory is asked
/// and the token compared whatever the other checks said) so that accounts cannot be probed
/// by timing or by the answer.
pub fn pick_account(
    directory: &dyn AccountDirectory,
    token: &[u8],
    login: &LocalLogin,
) -> (AccountLogin, Option<PickedAccount>) {
    let token_ok = !token.is_empty() && token_matches(token, &login.password);
    let name = std::str::from_utf8(&login.user).ok();
    let found = directory.account(name.unwrap_or_default());
    let authz_ok = login.authzid.is_empty() || *login.authzid == *login.user;
    let outcome = match (token_ok, found.is_some(), authz_ok, name) {
        (false, _, _, _) => AccountLogin::WrongToken,
        (true, _, false, _) => AccountLogin::WrongAuthzid,
        (true, false, true, _) | (true, true, true, None) => AccountLogin::UnknownAccount,
        (true, true, true, Some(_)) => AccountLogin::Accepted,
    };
    let picked = match (outcome, name, found) {
        (AccountLogin::Accepted, Some(name), Some(source)) => Some(PickedAccount {
            name: name.to_owned(),
            source,
        }),
        _ => None,
    };
    (outcome, picked)
}

/// The credential source of a front-end in account-set mode, where every session uses its
/// account's: it never hands out anything.
pub struct NoSource;

#[async_trait::async_trait]
impl CredentialSource for NoSource {
    async fn credential(&self) -> Result<Arc<UsableCredential>, crate::Error> {
        Err(crate::Error::NotLoaded)
    }
}

#[cfg(test)]
#[path = "local_login_tests.rs"]
mod tests;
