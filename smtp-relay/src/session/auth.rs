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
use super::account::constant_time_eq;
use super::state::Auth;
use crate::upstream::Upstream;
use crate::wire::reply::Reply;

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
                self.auth_finish(b"", &user, &password);
            }
            Auth::None | Auth::Done => {}
        }
    }

    fn auth_plain(&mut self, response: &[u8]) {
        let decoded = decode(trim_crlf(response));
        // authzid NUL authcid NUL passwd (RFC 4616)
        let mut parts = decoded.splitn(3, |&b| b == 0);
        let authzid = parts.next().unwrap_or_default();
        let authcid = parts.next().unwrap_or_default();
        let password = parts.next().unwrap_or_default();
        self.auth_finish(authzid, authcid, password);
    }

    fn auth_finish(&mut self, authzid: &[u8], authcid: &[u8], password: &[u8]) {
        let ok = if self.account_mode() {
            self.pick_account(authzid, authcid, password)
        } else {
            match &self.shared.config.local_token {
                None => true,
                Some(token) => constant_time_eq(token.as_bytes(), password),
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
