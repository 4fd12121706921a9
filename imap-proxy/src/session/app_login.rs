//! The application's login as the proxy reads it: `LOGIN user password` or `AUTHENTICATE
//! PLAIN` (with or without SASL-IR). The user is the account's name in account-set mode and
//! ignored otherwise; the password is the local token. Neither goes upstream.

use mailcred_core::local_login::token_matches;

use super::state::Session;
use crate::error::Error;
use crate::wire::command::AppCommand;
use crate::wire::conn::Line;
use crate::wire::lexer::Item;
use crate::wire::write::reply;

/// What the application logged in with (zeroized: the password is the local token).
pub(super) use mailcred_core::local_login::LocalLogin as AppLogin;

impl Session<'_> {
    /// What the application logged in with (LOGIN or AUTHENTICATE PLAIN), or `None` after
    /// answering a malformed attempt. The password is compared with the local token and
    /// dropped: it never goes upstream.
    pub(super) async fn app_login(&mut self, cmd: &AppCommand) -> Result<Option<AppLogin>, Error> {
        if cmd.name == b"LOGIN" {
            return match (
                cmd.items.first().and_then(Item::astring),
                cmd.items.get(1).and_then(Item::astring),
            ) {
                (Some(user), Some(pass)) if cmd.items.len() == 2 => {
                    Ok(Some(AppLogin::new(b"", user, pass)))
                }
                _ => {
                    reply(
                        &mut self.app,
                        &cmd.tag,
                        "BAD",
                        "LOGIN needs a user name and a password",
                    )
                    .await?;
                    Ok(None)
                }
            };
        }
        let mechanism = cmd
            .items
            .first()
            .and_then(Item::astring)
            .unwrap_or_default();
        if !mechanism.eq_ignore_ascii_case(b"PLAIN") {
            reply(
                &mut self.app,
                &cmd.tag,
                "NO",
                "[CANNOT] Only AUTHENTICATE PLAIN is supported",
            )
            .await?;
            return Ok(None);
        }
        let encoded = match cmd.items.get(1).and_then(Item::astring) {
            Some(b"=") => Vec::new(),
            Some(initial) => initial.to_vec(),
            None => {
                self.app.write(b"+ \r\n").await?;
                self.app.flush().await?;
                let timeout = self.ctx.config.login_timeout;
                match self
                    .app
                    .read_line(self.ctx.config.max_line_bytes, timeout, "reading SASL")
                    .await?
                {
                    Line::Complete(line) if line == b"*" => {
                        reply(&mut self.app, &cmd.tag, "BAD", "Authentication cancelled").await?;
                        return Ok(None);
                    }
                    Line::Complete(line) => line,
                    Line::TooLong { .. } => {
                        reply(&mut self.app, &cmd.tag, "BAD", "SASL response too long").await?;
                        return Ok(None);
                    }
                }
            }
        };
        let login = AppLogin::from_sasl_plain(&encoded);
        if login.is_none() {
            reply(
                &mut self.app,
                &cmd.tag,
                "BAD",
                "Invalid SASL PLAIN response",
            )
            .await?;
        }
        Ok(login)
    }

    /// Whether the login passes: the local token (when one is set) and, in account-set
    /// mode, the account it names (`account.rs`).
    pub(super) fn login_accepted(&mut self, login: &AppLogin) -> bool {
        if self.account_mode() {
            return self.pick_account(login);
        }
        match &self.ctx.config.local_token {
            None => true,
            Some(token) => token_matches(token.expose().as_bytes(), &login.password),
        }
    }
}
