//! The relay loop after login: upstream responses and application commands, one whole unit
//! at a time, with the idle, upstream and shutdown deadlines checked by one timer.

use std::time::{Duration, Instant};

use super::state::{PendingKind, Relay, Session, Step, Unit};
use super::{APP_INITIAL_BUF, stop_requested};
use crate::error::Error;
use crate::outcome::{Outcome, Reason};
use crate::wire::command::Read;
use crate::wire::conn::Line;
use crate::wire::skip::{marker_of, resync};

/// How often a session checks its deadlines and the credential's policy.
const TICK: Duration = Duration::from_secs(1);
/// How long upstream may keep the connection open after its BYE (RFC 3501 §7.1.5: it closes
/// it). The tagged answer of a LOGOUT follows the BYE, so the close is not expected at once;
/// a server that never closes (a token expired, a hostile one) must not hold the session
/// until the upstream timeout.
const BYE_GRACE: Duration = Duration::from_secs(2);

impl Session<'_> {
    pub(super) async fn relay(&mut self, r: &mut Relay) -> Result<Outcome, Error> {
        let cfg = &self.ctx.config;
        let mut last_app = Instant::now();
        // One timer checks the session's deadlines: a timer armed per request would wake the
        // runtime's driver on every command.
        let period = TICK
            .min(cfg.idle_timeout / 4)
            .min(cfg.upstream_timeout / 4)
            .max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut bye_seen: Option<Instant> = None;
        loop {
            if r.upstream_said_bye && bye_seen.is_none() {
                bye_seen = Some(Instant::now());
            }
            if !r.up.buffered().is_empty() {
                if let Unit::Close(outcome) = self.upstream_unit(r, false).await? {
                    return Ok(outcome);
                }
                continue;
            }
            let app_ready = r.pending.len() < cfg.max_pending_commands;
            if app_ready && !self.app.buffered().is_empty() {
                last_app = Instant::now();
                if let Step::Close(outcome) = self.app_input(r).await? {
                    return Ok(outcome);
                }
                self.app.shrink(APP_INITIAL_BUF);
                continue;
            }
            self.app.flush().await?;
            r.up.flush().await?;
            // IDLE may stay silent for as long as the application idles; once DONE went
            // out, upstream owes the tagged answer like for any command.
            let owes_response = r
                .pending
                .iter()
                .any(|p| !matches!(p.kind, PendingKind::Idle { .. }))
                || r.idle.as_ref().is_some_and(|i| i.done_sent);
            let upstream_deadline = r.last_upstream + cfg.upstream_timeout;
            let idle_deadline = last_app + cfg.idle_timeout;
            tokio::select! {
                read = r.up.fill() => match read? {
                    0 if r.upstream_said_bye => return Ok(Outcome::UpstreamBye),
                    0 => {
                        self.app.write(b"* BYE [UNAVAILABLE] Upstream connection lost\r\n").await?;
                        return Ok(Outcome::UpstreamLost);
                    }
                    _ => r.last_upstream = Instant::now(),
                },
                read = self.app.fill(), if app_ready => match read? {
                    0 => return Ok(Outcome::AppClosed),
                    _ => last_app = Instant::now(),
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    if bye_seen.is_some_and(|at| now >= at + BYE_GRACE) {
                        tracing::info!(credential = %r.cred.id(), "upstream said BYE and did not close; ending the session");
                        return Ok(Outcome::UpstreamBye);
                    }
                    if now >= idle_deadline {
                        self.app.write(b"* BYE Autologout; idle for too long\r\n").await?;
                        return Ok(Outcome::IdleTimeout);
                    }
                    if owes_response && now >= upstream_deadline {
                        tracing::warn!(credential = %r.cred.id(), timeout = ?cfg.upstream_timeout, "upstream IMAP server stopped answering");
                        self.app.write(b"* BYE [UNAVAILABLE] Upstream server not responding\r\n").await?;
                        return Ok(Outcome::UpstreamTimeout);
                    }
                    // Between units: a BYE here does not land inside a response.
                    if let Step::Close(outcome) = self.apply_policy_changes(r).await? {
                        return Ok(outcome);
                    }
                }
                _ = stop_requested(&mut self.shutdown) => {
                    self.app.write(b"* BYE Server shutting down\r\n").await?;
                    return Ok(Outcome::Shutdown);
                }
            }
        }
    }

    /// One application command (or the line that ends IDLE).
    async fn app_input(&mut self, r: &mut Relay) -> Result<Step, Error> {
        if r.idle.as_ref().is_some_and(|i| !i.done_sent) {
            return self.idle_input(r).await;
        }
        // Every command runs under the policy in force now, not the one at login.
        if let Step::Close(outcome) = self.apply_policy_changes(r).await? {
            return Ok(Step::Close(outcome));
        }
        self.command(r).await
    }

    /// The line the application sends while IDLE: DONE ends it; anything else ends it too and
    /// IDLE completes with BAD (RFC 2177).
    async fn idle_input(&mut self, r: &mut Relay) -> Result<Step, Error> {
        let limits = self.limits();
        let line = self
            .app
            .read_line(limits.max_line, limits.io_timeout, "waiting for DONE")
            .await?;
        r.up.write(b"DONE\r\n").await?;
        let Some(idle) = r.idle.as_mut() else {
            return Ok(Step::Continue);
        };
        idle.done_sent = true;
        let tag = idle.tag.clone();
        let marker = match &line {
            Line::Complete(l) if l.eq_ignore_ascii_case(b"DONE") => return Ok(Step::Continue),
            Line::Complete(l) => marker_of(l),
            Line::TooLong { tail } => marker_of(tail),
        };
        if let Some(p) = r.pending.iter_mut().find(|p| p.tag == tag) {
            p.kind = PendingKind::Idle { reject: true };
        }
        self.deny("IDLE", Reason::IdleNotDone, None);
        match resync(&mut self.app, marker, &limits, Reason::IdleNotDone).await? {
            Read::Close(_) => Ok(Step::Close(Outcome::ClosedByProxy)),
            _ => Ok(Step::Continue),
        }
    }
}
