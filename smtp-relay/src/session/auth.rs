//! The application's AUTH (PLAIN, LOGIN): checked against the local token when one is
//! configured, otherwise accepted and ignored (frameworks that insist on authenticating).
//! In account-set mode it also picks the account (`account.rs`). The sidecar authenticates
//! upstream with the credential; nothing here goes upstream.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

use super::Session;
use super::state::Auth;
use crate::upstream::Upstream;
use crate::wire::reply::Reply;
use mailcred_core::local_login::{LocalLogin, token_matches};

impl<U: Upstream, S: AsyncRead + AsyncWrite + Unpin> Session<'_, U, S> {
    pub(super) fn auth_start(&mut self, mechanism: u64, initial: &str) {
        if self.auth == Auth::Done {
            self.error(Reply::new(503, "5.5.1", "already authenticated"));
            return;
        }
        if self.tx.is_some() {
            self.error(Reply::new(
                503,
                "5.5.1",
                "AUTH is not allowed during a transaction",
            ));
            return;
        }
        let initial = match initial {
            "=" => Some(""),
            "" => None,
            other => Some(other),
        };
        match (mechanism, initial) {
            (AUTH_PLAIN, None) => {
                self.auth = Auth::PlainResponse;
                self.reply(Reply::new(334, "", ""));
            }
            (AUTH_PLAIN, Some(response)) => self.auth_plain(response.as_bytes()),
            (AUTH_LOGIN, None) => {
                self.auth = Auth::LoginUser;
                self.reply(Reply::new(334, "", "VXNlcm5hbWU6"));
            }
            (AUTH_LOGIN, Some(user)) => {
                self.login_user = decode(user.as_bytes());
                self.auth = Auth::LoginPassword;
                self.reply(Reply::new(334, "", "UGFzc3dvcmQ6"));
            }
            _ => self.error(Reply::new(
                504,
                "5.5.4",
                "mechanism not supported; use PLAIN or LOGIN",
            )),
        }
    }

    pub(super) fn auth_continue(&mut self, line: &[u8]) {
        let line = trim_crlf(line);
        if line == b"*" {
            self.auth = Auth::None;
            self.error(Reply::new(501, "5.0.0", "authentication cancelled"));
            return;
        }
        match self.auth {
            Auth::PlainResponse => self.auth_plain(line),
            Auth::LoginUser => {
                self.login_user = decode(line);
                self.auth = Auth::LoginPassword;
                self.reply(Reply::new(334, "", "UGFzc3dvcmQ6"));
            }
            Auth::LoginPassword => {
                let password = decode(line);
                let user = std::mem::take(&mut self.login_user);
                self.auth_finish(&LocalLogin::new(b"", &user, &password));
            }
            Auth::None | Auth::Done => {}
        }
    }

    fn auth_plain(&mut self, response: &[u8]) {
        // A malformed response is an empty login, which only a relay without a local token
        // accepts (as it accepts any).
        let login = LocalLogin::from_sasl_plain(trim_crlf(response))
            .unwrap_or_else(|| LocalLogin::new(b"", b"", b""));
        self.auth_finish(&login);
    }

    fn auth_finish(&mut self, login: &LocalLogin) {
        let ok = if self.account_mode() {
            self.pick_account(login)
        } else {
            match &self.shared.config.local_token {
                None => true,
                Some(token) => token_matches(token.as_bytes(), &login.password),
            }
        };
        if ok {
            self.auth = Auth::Done;
            let text = if self.shared.config.local_token.is_some() {
                "authenticated"
            } else {
                "accepted; no application credential is needed, the sidecar authenticates upstream"
            };
            self.reply(Reply::new(235, "2.7.0", text));
        } else {
            self.auth = Auth::None;
            self.error(Reply::new(535, "5.7.8", "authentication failed"));
        }
    }
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Base64 of a SASL step (may hold the token: zeroized); invalid base64 decodes to nothing,
/// which no check accepts.
fn decode(line: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(STANDARD.decode(trim_crlf(line)).unwrap_or_default())
}
