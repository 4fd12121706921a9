//! Upstream responses to the application, one whole response at a time: continuation
//! requests, untagged data (streamed), the responses the policy looks into (LIST, LSUB,
//! STATUS, CAPABILITY, status responses with response codes), and tagged completions, which
//! retire pending commands and track the selected mailbox.

use std::time::Instant;

use super::mailboxes::MailboxResponse;
use super::state::{PendingKind, Relay, Selected, Session, Unit};
use crate::error::Error;
use crate::outcome::Outcome;
use crate::wire::conn::Line;
use crate::wire::lexer::{Item, Lexer, trailing_literal};
use crate::wire::response::rewrite_capability_code;
use crate::wire::stream::stream_response;

/// Bytes of a response needed to tell its kind.
const CLASSIFY_BYTES: usize = 64;

impl Session<'_> {
    /// Handles one complete upstream response.
    pub(super) async fn upstream_unit(
        &mut self,
        r: &mut Relay,
        expecting_continuation: bool,
    ) -> Result<Unit, Error> {
        let timeout = self.ctx.config.upstream_timeout;
        loop {
            let b = r.up.buffered();
            if b.len() >= CLASSIFY_BYTES || memchr::memchr(b'\n', b).is_some() {
                break;
            }
            r.up.fill_within(timeout, "reading a response").await?;
        }
        r.last_upstream = Instant::now();
        let head = r.up.buffered();
        let head = &head[..head.len().min(CLASSIFY_BYTES)];
        if head.starts_with(b"+") {
            let line = self.upstream_line(r).await?;
            if expecting_continuation {
                return Ok(Unit::Continuation);
            }
            if let Some(idle) = r.idle.as_mut().filter(|i| !i.continued) {
                idle.continued = true;
                self.app.write(&line).await?;
                self.app.write(b"\r\n").await?;
            } else {
                tracing::debug!("dropping an unexpected continuation request from upstream");
            }
            return Ok(Unit::Forwarded);
        }
        let Some(rest) = head.strip_prefix(b"* ") else {
            return self.tagged(r).await;
        };
        if rest.first().is_some_and(u8::is_ascii_digit) {
            stream_response(&mut r.up, &mut self.app, timeout).await?;
            return Ok(Unit::Forwarded);
        }
        let word_len = rest
            .iter()
            .position(|&c| c == b' ' || c == b'\r' || c == b'\n')
            .unwrap_or(rest.len());
        let word = rest[..word_len].to_ascii_uppercase();
        match word.as_slice() {
            b"LIST" | b"LSUB" => self.filtered(r, MailboxResponse::Listing).await?,
            b"STATUS" => self.filtered(r, MailboxResponse::Status).await?,
            b"CAPABILITY" => {
                self.read_unit(r).await?;
                let line = format!("* CAPABILITY {}\r\n", r.caps);
                self.app.write(line.as_bytes()).await?;
            }
            b"OK" | b"NO" | b"BAD" | b"PREAUTH" | b"BYE" => {
                if word == b"BYE" {
                    r.upstream_said_bye = true;
                }
                let (raw, _) = self.read_unit(r).await?;
                let out = rewrite_capability_code(&raw, 2 + word.len() + 1, &r.caps);
                self.app.write(&out).await?;
            }
            _ => stream_response(&mut r.up, &mut self.app, timeout).await?,
        }
        Ok(Unit::Forwarded)
    }

    async fn upstream_line(&mut self, r: &mut Relay) -> Result<Vec<u8>, Error> {
        let cfg = &self.ctx.config;
        match r
            .up
            .read_line(
                cfg.max_line_bytes,
                cfg.upstream_timeout,
                "reading a response",
            )
            .await?
        {
            Line::Complete(line) => Ok(line),
            Line::TooLong { .. } => Err(Error::UpstreamProtocol("response line too long".into())),
        }
    }

    /// Reads a whole response into memory (lines and literals, bounded) for inspection.
    /// Returns its raw bytes and the tokens after `* `, if they parse.
    pub(super) async fn read_unit(
        &mut self,
        r: &mut Relay,
    ) -> Result<(Vec<u8>, Option<Vec<Item>>), Error> {
        let cfg = &self.ctx.config;
        let mut raw = Vec::new();
        let mut lexer = Some(Lexer::new());
        let mut lex_from = 2;
        loop {
            let line = self.upstream_line(r).await?;
            if let Some(l) = lexer.as_mut()
                && l.feed_line(line.get(lex_from..).unwrap_or_default())
                    .is_err()
            {
                lexer = None;
            }
            lex_from = 0;
            raw.extend_from_slice(&line);
            raw.extend_from_slice(b"\r\n");
            let Some(len) = trailing_literal(&line) else {
                break;
            };
            let len = usize::try_from(len)
                .ok()
                .filter(|&n| {
                    n <= cfg.max_inline_literal_bytes && raw.len() + n <= cfg.max_command_bytes
                })
                .ok_or_else(|| {
                    Error::UpstreamProtocol(
                        "literal too large in a response the proxy inspects".into(),
                    )
                })?;
            let data =
                r.up.read_exact_bytes(len, cfg.upstream_timeout, "reading a response")
                    .await?;
            raw.extend_from_slice(&data);
            if let Some(l) = lexer.as_mut() {
                l.feed_literal(data);
            }
        }
        Ok((raw, lexer.and_then(|l| l.finish().ok())))
    }

    async fn tagged(&mut self, r: &mut Relay) -> Result<Unit, Error> {
        let line = self.upstream_line(r).await?;
        if trailing_literal(&line).is_some() {
            return Err(Error::UpstreamProtocol(
                "literal in a tagged response".into(),
            ));
        }
        let tag_len = line.iter().position(|&c| c == b' ').unwrap_or(line.len());
        let tag = line[..tag_len].to_vec();
        let status_end = line[tag_len..]
            .iter()
            .skip(1)
            .position(|&c| c == b' ')
            .map_or(line.len(), |p| tag_len + 1 + p);
        let ok = line
            .get(tag_len + 1..status_end)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"OK"));
        let kind = r
            .pending
            .iter()
            .position(|p| p.tag == tag)
            .map(|i| r.pending.remove(i).kind);
        let mut out = match kind {
            Some(PendingKind::Idle { reject: true }) => {
                let mut out = tag.clone();
                out.extend_from_slice(b" BAD Expected DONE; IDLE ended");
                out
            }
            _ => line.clone(),
        };
        match &kind {
            Some(PendingKind::Idle { .. }) => r.idle = None,
            Some(PendingKind::Open { mailbox, writable }) => {
                // A failed SELECT or EXAMINE leaves no mailbox selected (RFC 3501 6.3.1).
                r.selected = ok.then(|| Selected {
                    name: mailbox.clone(),
                    writable: *writable,
                });
                if ok {
                    self.audit.mailbox_opened(mailbox);
                }
            }
            Some(PendingKind::Deselect) if ok => r.selected = None,
            _ => {}
        }
        out.extend_from_slice(b"\r\n");
        let out = rewrite_capability_code(&out, (status_end + 1).min(out.len()), &r.caps);
        self.app.write(&out).await?;
        if kind == Some(PendingKind::Logout) {
            return Ok(Unit::Close(Outcome::Logout));
        }
        Ok(Unit::Tagged(tag))
    }
}
