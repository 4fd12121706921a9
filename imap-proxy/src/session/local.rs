//! The answers the proxy gives itself, in either phase: CAPABILITY (its own list), ID (not
//! upstream's software), LOGIN/AUTHENTICATE/STARTTLS after login, and ENABLE (only what the
//! proxy can honour goes upstream).

use super::state::{PendingKind, Relay, Session, Step};
use crate::command_table::{Command, ENABLEABLE};
use crate::error::Error;
use crate::wire::command::{AppCommand, Segment};
use crate::wire::write::reply;

impl Session<'_> {
    pub(super) async fn answer_capability(&mut self, tag: &[u8], caps: &str) -> Result<(), Error> {
        self.app
            .write(format!("* CAPABILITY {caps}\r\n").as_bytes())
            .await?;
        reply(&mut self.app, tag, "OK", "CAPABILITY completed").await
    }

    pub(super) async fn answer_id(&mut self, tag: &[u8]) -> Result<(), Error> {
        // Answered here: upstream's software and version are none of the application's business.
        self.app.write(b"* ID (\"name\" \"mailcred\")\r\n").await?;
        reply(&mut self.app, tag, "OK", "ID completed").await
    }

    /// A command of class `Local` after login.
    pub(super) async fn answer_locally(
        &mut self,
        r: &mut Relay,
        command: Command,
        cmd: AppCommand,
    ) -> Result<Step, Error> {
        let tag = cmd.tag.clone();
        match command {
            Command::Capability => {
                let caps = r.caps.clone();
                self.answer_capability(&tag, &caps).await?
            }
            Command::Id => self.answer_id(&tag).await?,
            Command::Login | Command::Authenticate => {
                reply(&mut self.app, &tag, "BAD", "Already logged in").await?
            }
            Command::Starttls => {
                reply(&mut self.app, &tag, "BAD", "STARTTLS is not offered").await?
            }
            Command::Enable => return self.enable(r, cmd).await,
            _ => reply(&mut self.app, &tag, "BAD", "Unknown or unsupported command").await?,
        }
        Ok(Step::Continue)
    }

    /// ENABLE passes on only the extensions the proxy can honour.
    async fn enable(&mut self, r: &mut Relay, cmd: AppCommand) -> Result<Step, Error> {
        let wanted: Vec<&str> = ENABLEABLE
            .iter()
            .copied()
            .filter(|ext| {
                cmd.items.iter().any(|i| {
                    i.astring()
                        .is_some_and(|a| a.eq_ignore_ascii_case(ext.as_bytes()))
                })
            })
            .collect();
        if wanted.is_empty() || !r.caps.split(' ').any(|c| c == "ENABLE") {
            self.app.write(b"* ENABLED\r\n").await?;
            reply(&mut self.app, &cmd.tag, "OK", "ENABLE completed").await?;
            return Ok(Step::Continue);
        }
        let mut text = cmd.tag.clone();
        text.extend_from_slice(b" ENABLE ");
        text.extend_from_slice(wanted.join(" ").as_bytes());
        let rebuilt = AppCommand {
            segments: vec![Segment {
                text,
                literal: None,
            }],
            ..cmd
        };
        self.forward(r, &rebuilt, PendingKind::Plain).await
    }
}
