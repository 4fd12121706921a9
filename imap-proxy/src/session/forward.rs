//! Application commands to upstream: the command's text and literals (LITERAL+ when upstream
//! has it, otherwise waiting for each continuation), and APPEND, whose message streams
//! through without being held.

use std::time::Instant;

use super::state::{Idle, LiteralGo, Pending, PendingKind, Relay, Session, Step, Unit};
use crate::command_table::Command;
use crate::error::Error;
use crate::outcome::{Outcome, Reason};
use crate::wire::command::{AppCommand, Read};
use crate::wire::conn::Line;
use crate::wire::lexer::LiteralMarker;
use crate::wire::skip::resync;
use crate::wire::stream::copy_exact;

impl Session<'_> {
    fn track(&mut self, r: &mut Relay, tag: &[u8], kind: PendingKind) {
        if r.pending.is_empty() {
            r.last_upstream = Instant::now();
        }
        if kind == (PendingKind::Idle { reject: false }) {
            r.idle = Some(Idle {
                tag: tag.to_vec(),
                continued: false,
                done_sent: false,
            });
        }
        r.pending.push(Pending {
            tag: tag.to_vec(),
            kind,
        });
    }

    /// Sends the command's segments and literals; `Ok(None)` once all of it went out.
    async fn send_segments(
        &mut self,
        r: &mut Relay,
        cmd: &AppCommand,
    ) -> Result<Option<LiteralGo>, Error> {
        for seg in &cmd.segments {
            r.up.write(&seg.text).await?;
            if let Some(literal) = &seg.literal {
                match self
                    .literal_to_upstream(r, literal.len() as u64, &cmd.tag)
                    .await?
                {
                    LiteralGo::Send => r.up.write(literal).await?,
                    other => return Ok(Some(other)),
                }
            }
        }
        Ok(None)
    }

    pub(super) async fn forward(
        &mut self,
        r: &mut Relay,
        cmd: &AppCommand,
        kind: PendingKind,
    ) -> Result<Step, Error> {
        self.track(r, &cmd.tag, kind);
        match self.send_segments(r, cmd).await? {
            None => {}
            Some(LiteralGo::Close(o)) => return Ok(Step::Close(o)),
            Some(_) => return Ok(Step::Continue),
        }
        r.up.write(b"\r\n").await?;
        Ok(Step::Continue)
    }

    /// Announces a literal upstream: non-synchronizing when upstream has LITERAL+, otherwise
    /// synchronizing, relaying other responses until upstream asks for the data.
    async fn literal_to_upstream(
        &mut self,
        r: &mut Relay,
        len: u64,
        tag: &[u8],
    ) -> Result<LiteralGo, Error> {
        if r.literal_plus {
            r.up.write(format!("{{{len}+}}\r\n").as_bytes()).await?;
            return Ok(LiteralGo::Send);
        }
        r.up.write(format!("{{{len}}}\r\n").as_bytes()).await?;
        r.up.flush().await?;
        loop {
            match self.upstream_unit(r, true).await? {
                Unit::Continuation => return Ok(LiteralGo::Send),
                Unit::Tagged(t) if t == tag => return Ok(LiteralGo::Answered),
                Unit::Close(o) => return Ok(LiteralGo::Close(o)),
                _ => {}
            }
        }
    }

    /// APPEND: the message literal streams from the application to upstream, never held.
    pub(super) async fn append(
        &mut self,
        r: &mut Relay,
        cmd: AppCommand,
        marker: LiteralMarker,
    ) -> Result<Step, Error> {
        let limits = self.limits();
        let spec = Command::Append.spec();
        self.count(spec.label);
        if self.check_mailboxes(r, &cmd, spec).await?.is_none() {
            return match resync(&mut self.app, Some(marker), &limits, Reason::Mailbox).await? {
                Read::Close(_) => Ok(Step::Close(Outcome::ClosedByProxy)),
                _ => Ok(Step::Continue),
            };
        }
        self.track(r, &cmd.tag, PendingKind::Plain);
        match self.send_segments(r, &cmd).await? {
            None => {}
            Some(LiteralGo::Close(o)) => return Ok(Step::Close(o)),
            Some(_) => return self.skip_refused_append(marker).await,
        }
        match self.literal_to_upstream(r, marker.len, &cmd.tag).await? {
            LiteralGo::Send => {}
            LiteralGo::Answered => return self.skip_refused_append(marker).await,
            LiteralGo::Close(o) => return Ok(Step::Close(o)),
        }
        if marker.synchronizing {
            self.app.write(b"+ Ready for literal data\r\n").await?;
            self.app.flush().await?;
        }
        // An application that vanishes here leaves upstream inside a literal: the session
        // ends with an error and the upstream connection is closed, never reused.
        copy_exact(
            &mut self.app,
            &mut r.up,
            marker.len,
            limits.io_timeout,
            "reading an APPEND message",
        )
        .await?;
        match self
            .app
            .read_line(limits.max_line, limits.io_timeout, "reading a command")
            .await?
        {
            Line::Complete(rest) if rest.is_empty() => {
                r.up.write(b"\r\n").await?;
                Ok(Step::Continue)
            }
            _ => {
                // MULTIAPPEND / CATENATE are not offered; upstream is mid-command, so both
                // connections close rather than guess.
                self.deny("APPEND", Reason::Syntax, None);
                self.app
                    .write(b"* BYE Only single-message APPEND is supported\r\n")
                    .await?;
                Ok(Step::Close(Outcome::ClosedByProxy))
            }
        }
    }

    /// Upstream refused an APPEND before its message: skip what the application still sends.
    async fn skip_refused_append(&mut self, marker: LiteralMarker) -> Result<Step, Error> {
        let limits = self.limits();
        if marker.synchronizing {
            return Ok(Step::Continue);
        }
        match resync(
            &mut self.app,
            Some(marker),
            &limits,
            Reason::UpstreamRefused,
        )
        .await?
        {
            Read::Close(_) => Ok(Step::Close(Outcome::ClosedByProxy)),
            _ => Ok(Step::Continue),
        }
    }
}
