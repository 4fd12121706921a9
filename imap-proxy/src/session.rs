//! One application session: local greeting and login, upstream login with the credential,
//! then the relay with the policy filter.
//!
//! A session is one task that owns both connections. Upstream responses are handled one
//! whole response at a time (FETCH data streams through without being stored), application
//! commands one whole command at a time, so the proxy's own answers (denials, CAPABILITY, ID)
//! never land inside an upstream response.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailcred_core::credential::UsableCredential;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::audit::SessionAudit;
use crate::commands::{self, Class, ENABLEABLE, MailboxArgs, PRE_AUTH_CAPABILITIES};
use crate::error::{Error, Side};
use crate::mailbox::{MailboxPatterns, NameError};
use crate::metrics::{CommandLabels, DenialLabels, DirectionLabels, OutcomeLabels};
use crate::proxy::Inner;
use crate::upstream::{self, LoginLimits, UpstreamIo, capability_code};
use crate::wire::command::{
    AppCommand, Limits, Read, Refusal, marker_of, read_command, reply, resync,
};
use crate::wire::conn::{Conn, Line};
use crate::wire::lexer::{Item, Lexer, LiteralMarker, trailing_literal};
use crate::wire::stream::{copy_exact, stream_response};

/// Application read buffer to start with; it grows to the line bound only for long lines.
const APP_INITIAL_BUF: usize = 4 * 1024;
/// Application write buffer: responses are sent in chunks up to this size.
const APP_WRITE_BUF: usize = 32 * 1024;
/// Bytes of a response needed to tell its kind.
const CLASSIFY_BYTES: usize = 64;
/// How often a session checks its idle and upstream deadlines.
const TICK: Duration = Duration::from_secs(1);
/// Failed local logins before the connection is closed.
const MAX_LOGIN_FAILURES: u32 = 3;

pub(crate) async fn run(inner: &Inner, stream: TcpStream, shutdown: watch::Receiver<bool>) {
    let cfg = &inner.config;
    let app = Conn::new(
        stream,
        Side::App,
        APP_INITIAL_BUF,
        cfg.max_line_bytes + 2,
        APP_WRITE_BUF,
        cfg.app_io_timeout,
    );
    let mut session = Session {
        inner,
        app,
        audit: SessionAudit::new(),
        shutdown,
        upstream_bytes: (0, 0),
    };
    inner.metrics.active_sessions.inc();
    let outcome = match session.run().await {
        Ok(outcome) => outcome,
        Err(e) => {
            let label = e.metric_label();
            match e.side() {
                Some(Side::App) => {
                    tracing::debug!(error = %e, "IMAP session ended by the application")
                }
                _ => tracing::warn!(error = %e, "IMAP session failed"),
            }
            if e.side() == Some(Side::Upstream) {
                let _ = session
                    .app
                    .write(b"* BYE [UNAVAILABLE] Upstream connection lost\r\n")
                    .await;
            }
            label
        }
    };
    session
        .app
        .shutdown(cfg.app_io_timeout.min(std::time::Duration::from_secs(5)))
        .await;
    inner.metrics.active_sessions.dec();
    inner
        .metrics
        .sessions
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
    inner
        .metrics
        .session_seconds
        .observe(session.audit.started.elapsed().as_secs_f64());
    let to_app = session.app.bytes_written;
    let from_app = session.app.bytes_read;
    inner
        .metrics
        .bytes
        .get_or_create(&DirectionLabels {
            direction: "to_app",
        })
        .inc_by(to_app);
    inner
        .metrics
        .bytes
        .get_or_create(&DirectionLabels {
            direction: "to_upstream",
        })
        .inc_by(session.upstream_bytes.1);
    session.audit.emit(&cfg.pod, outcome, to_app, from_app);
}

impl Error {
    fn side(&self) -> Option<Side> {
        match self {
            Error::Io { side, .. } | Error::Closed { side } | Error::Timeout { side, .. } => {
                Some(*side)
            }
            Error::UpstreamProtocol(_) => Some(Side::Upstream),
            _ => None,
        }
    }
}

struct Session<'a> {
    inner: &'a Inner,
    app: Conn<TcpStream>,
    audit: SessionAudit,
    shutdown: watch::Receiver<bool>,
    /// (read, written) on the upstream connection, kept for the session's end.
    upstream_bytes: (u64, u64),
}

/// State of the relay after login.
struct Relay {
    up: Conn<UpstreamIo>,
    cred: Arc<UsableCredential>,
    caps: String,
    read_only: bool,
    patterns: MailboxPatterns,
    literal_plus: bool,
    pending: Vec<Pending>,
    idle: Option<Idle>,
    last_upstream: Instant,
    upstream_said_bye: bool,
}

struct Pending {
    tag: Vec<u8>,
    kind: PendingKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PendingKind {
    Plain,
    Open(String),
    Idle { reject: bool },
    Logout,
}

struct Idle {
    tag: Vec<u8>,
    continued: bool,
    done_sent: bool,
}

/// What handling one upstream response produced.
enum Unit {
    Forwarded,
    Continuation,
    Tagged(Vec<u8>),
    Close(&'static str),
}

/// What handling one application command produced.
enum Step {
    Continue,
    Close(&'static str),
}

impl<'a> Session<'a> {
    fn limits(&self) -> Limits {
        let cfg = &self.inner.config;
        Limits {
            max_line: cfg.max_line_bytes,
            max_inline_literal: cfg.max_inline_literal_bytes,
            max_command: cfg.max_command_bytes,
            max_append: cfg.max_append_bytes,
            io_timeout: cfg.app_io_timeout,
        }
    }

    fn deny(&mut self, command: &str, reason: &'static str, mailbox: Option<&str>) {
        self.inner
            .metrics
            .denials
            .get_or_create(&DenialLabels { reason })
            .inc();
        self.audit
            .denial(&self.inner.config.pod, command, reason, mailbox);
    }

    fn count(&mut self, label: &'static str) {
        self.audit.command(label);
        self.inner
            .metrics
            .commands
            .get_or_create(&CommandLabels { command: label })
            .inc();
    }

    async fn run(&mut self) -> Result<&'static str, Error> {
        self.app
            .write(
                format!("* OK [CAPABILITY {PRE_AUTH_CAPABILITIES}] mailcred IMAP proxy ready\r\n")
                    .as_bytes(),
            )
            .await?;
        self.app.flush().await?;
        let mut relay = match self.pre_auth().await? {
            Ok(relay) => relay,
            Err(outcome) => return Ok(outcome),
        };
        let result = self.relay(&mut relay).await;
        self.upstream_bytes = (relay.up.bytes_read, relay.up.bytes_written);
        if !relay.upstream_said_bye && result.as_ref().map(|o| *o != "logout").unwrap_or(true) {
            // Leave upstream cleanly when the application did not.
            let _ = relay.up.write(b"m9 LOGOUT\r\n").await;
        }
        relay.up.shutdown(std::time::Duration::from_secs(2)).await;
        result
    }

    /// Until the application has logged in. `Ok(Err(outcome))` ends the session.
    async fn pre_auth(&mut self) -> Result<Result<Relay, &'static str>, Error> {
        let limits = self.limits();
        let login_timeout = self.inner.config.login_timeout;
        let mut failures = 0;
        loop {
            self.app.flush().await?;
            let shutdown = &mut self.shutdown;
            let read = tokio::select! {
                read = self.app.read_line(limits.max_line, login_timeout, "waiting for login") => read,
                _ = stop_requested(shutdown) => {
                    self.app.write(b"* BYE Server shutting down\r\n").await?;
                    return Ok(Err("shutdown"));
                }
            };
            let first = match read {
                Ok(line) => line,
                Err(Error::Timeout { .. }) => {
                    self.app
                        .write(b"* BYE Autologout; no login in time\r\n")
                        .await?;
                    return Ok(Err("login_timeout"));
                }
                Err(Error::Closed { side: Side::App }) => return Ok(Err("app_closed")),
                Err(e) => return Err(e),
            };
            let read = read_command(&mut self.app, first, &limits, |name, _| match name {
                b"CAPABILITY" | b"NOOP" | b"LOGOUT" | b"LOGIN" | b"AUTHENTICATE" | b"ID"
                | b"STARTTLS" => None,
                _ => Some(Refusal {
                    status: "BAD",
                    text: "Log in first".into(),
                    reason: "not_authenticated",
                }),
            })
            .await?;
            let cmd = match read {
                Read::Command(cmd) => cmd,
                Read::Rejected(reason) => {
                    self.deny("", reason, None);
                    continue;
                }
                Read::Close(reason) => {
                    self.deny("", reason, None);
                    return Ok(Err("closed_by_proxy"));
                }
                Read::AppendMessage(cmd, marker) => {
                    // Unreachable through the precheck; answered anyway to stay in sync.
                    reply(&mut self.app, &cmd.tag, "BAD", "Log in first").await?;
                    if let Read::Close(_) =
                        resync(&mut self.app, Some(marker), &limits, "not_authenticated").await?
                    {
                        return Ok(Err("closed_by_proxy"));
                    }
                    continue;
                }
            };
            let tag = cmd.tag.clone();
            match cmd.name.as_slice() {
                b"CAPABILITY" => {
                    self.app
                        .write(format!("* CAPABILITY {PRE_AUTH_CAPABILITIES}\r\n").as_bytes())
                        .await?;
                    reply(&mut self.app, &tag, "OK", "CAPABILITY completed").await?;
                }
                b"NOOP" => reply(&mut self.app, &tag, "OK", "NOOP completed").await?,
                b"LOGOUT" => {
                    self.app.write(b"* BYE Logging out\r\n").await?;
                    reply(&mut self.app, &tag, "OK", "LOGOUT completed").await?;
                    return Ok(Err("logout"));
                }
                b"ID" => self.answer_id(&tag).await?,
                b"STARTTLS" => {
                    reply(
                        &mut self.app,
                        &tag,
                        "BAD",
                        "STARTTLS is not offered: the proxy listens on loopback only",
                    )
                    .await?
                }
                b"LOGIN" | b"AUTHENTICATE" => {
                    let Some(password) = self.login_password(&cmd).await? else {
                        continue;
                    };
                    if !self.local_token_matches(&password) {
                        failures += 1;
                        self.deny("LOGIN", "local_auth", None);
                        reply(
                            &mut self.app,
                            &tag,
                            "NO",
                            "[AUTHENTICATIONFAILED] Invalid credentials",
                        )
                        .await?;
                        if failures >= MAX_LOGIN_FAILURES {
                            self.app.write(b"* BYE Too many failed logins\r\n").await?;
                            return Ok(Err("local_auth_failed"));
                        }
                        continue;
                    }
                    if let Some(relay) = self.login_upstream(&tag).await? {
                        return Ok(Ok(relay));
                    }
                }
                _ => reply(&mut self.app, &tag, "BAD", "Log in first").await?,
            }
        }
    }

    async fn answer_id(&mut self, tag: &[u8]) -> Result<(), Error> {
        // Answered here: upstream's software and version are none of the application's business.
        self.app.write(b"* ID (\"name\" \"mailcred\")\r\n").await?;
        reply(&mut self.app, tag, "OK", "ID completed").await
    }

    /// The password the application logged in with (LOGIN or AUTHENTICATE PLAIN), or `None`
    /// after answering a malformed attempt. It is compared with the local token and dropped:
    /// it never goes upstream.
    async fn login_password(
        &mut self,
        cmd: &AppCommand,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, Error> {
        if cmd.name == b"LOGIN" {
            return match (
                cmd.items.first().and_then(Item::astring),
                cmd.items.get(1).and_then(Item::astring),
            ) {
                (Some(_), Some(pass)) if cmd.items.len() == 2 => {
                    Ok(Some(zeroize::Zeroizing::new(pass.to_vec())))
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
                let timeout = self.inner.config.login_timeout;
                match self
                    .app
                    .read_line(self.inner.config.max_line_bytes, timeout, "reading SASL")
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
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&encoded)
            .ok()
            .map(zeroize::Zeroizing::new);
        let password = decoded.as_ref().and_then(|d| {
            let mut parts = d.splitn(3, |&c| c == 0);
            let (_authz, _authn, pass) = (parts.next()?, parts.next()?, parts.next()?);
            Some(zeroize::Zeroizing::new(pass.to_vec()))
        });
        if password.is_none() {
            reply(
                &mut self.app,
                &cmd.tag,
                "BAD",
                "Invalid SASL PLAIN response",
            )
            .await?;
        }
        Ok(password)
    }

    fn local_token_matches(&self, password: &[u8]) -> bool {
        match &self.inner.config.local_token {
            None => true,
            Some(token) => constant_time_eq(token.expose().as_bytes(), password),
        }
    }

    /// Fetches the credential and logs in upstream. Answers the application's LOGIN either
    /// way; `None` when it failed (the application may try again).
    async fn login_upstream(&mut self, tag: &[u8]) -> Result<Option<Relay>, Error> {
        let cfg = &self.inner.config;
        let cred = match tokio::time::timeout(cfg.upstream_timeout, self.inner.source.credential())
            .await
        {
            Ok(Ok(cred)) => cred,
            Ok(Err(e)) => {
                let label = e.metric_label();
                tracing::warn!(error = %e, label, "IMAP login: credential unavailable");
                self.deny("LOGIN", "credential_unavailable", None);
                let text =
                    format!("[UNAVAILABLE] Credential unavailable ({label}); try again later");
                reply(&mut self.app, tag, "NO", &text).await?;
                return Ok(None);
            }
            Err(_) => {
                tracing::warn!(timeout = ?cfg.upstream_timeout, "IMAP login: credential source did not answer in time");
                self.deny("LOGIN", "credential_unavailable", None);
                reply(
                    &mut self.app,
                    tag,
                    "NO",
                    "[UNAVAILABLE] Credential unavailable; try again later",
                )
                .await?;
                return Ok(None);
            }
        };
        self.audit.credential = Some(cred.id());
        let policy = &cred.policy.imap;
        if !policy.enabled {
            self.deny("LOGIN", "imap_disabled", None);
            reply(
                &mut self.app,
                tag,
                "NO",
                "[NOPERM] IMAP is disabled for this credential",
            )
            .await?;
            return Ok(None);
        }
        let Some(endpoint) = cred.imap.as_ref() else {
            self.deny("LOGIN", "no_imap_endpoint", None);
            reply(
                &mut self.app,
                tag,
                "NO",
                "[UNAVAILABLE] This credential has no IMAP server",
            )
            .await?;
            return Ok(None);
        };
        let started = Instant::now();
        let limits = LoginLimits {
            timeout: cfg.upstream_timeout,
            max_line: cfg.max_line_bytes,
        };
        let up = match upstream::connect_and_login(
            endpoint,
            &cred.username,
            &cred.password,
            &self.inner.tls,
            limits,
        )
        .await
        {
            Ok(up) => up,
            Err(e) => {
                tracing::warn!(credential = %cred.id(), error = %e, "IMAP upstream login failed");
                let reason = e.metric_label();
                self.deny("LOGIN", reason, None);
                reply(
                    &mut self.app,
                    tag,
                    "NO",
                    &format!(
                        "[UNAVAILABLE] Upstream IMAP server unavailable ({reason}); try again later"
                    ),
                )
                .await?;
                return Ok(None);
            }
        };
        self.inner
            .metrics
            .upstream_login_seconds
            .observe(started.elapsed().as_secs_f64());
        self.audit.upstream_user = Some(cred.username.clone());
        self.count("LOGIN");
        let read_only = policy.read_only;
        let caps = commands::post_auth_capabilities(&up.capabilities, read_only);
        reply(
            &mut self.app,
            tag,
            "OK",
            &format!("[CAPABILITY {caps}] Logged in"),
        )
        .await?;
        let literal_plus = up.has("LITERAL+") && cfg.upstream_literal_plus;
        Ok(Some(Relay {
            up: up.conn,
            patterns: MailboxPatterns::new(&policy.allowed_mailboxes),
            read_only,
            cred: cred.clone(),
            caps,
            literal_plus,
            pending: Vec::new(),
            idle: None,
            last_upstream: Instant::now(),
            upstream_said_bye: false,
        }))
    }

    async fn relay(&mut self, r: &mut Relay) -> Result<&'static str, Error> {
        let cfg = &self.inner.config;
        let mut last_app = Instant::now();
        // One timer checks the session's deadlines: a timer armed per request would wake the
        // runtime's driver on every command.
        let period = TICK
            .min(cfg.idle_timeout / 4)
            .min(cfg.upstream_timeout / 4)
            .max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
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
                    0 if r.upstream_said_bye => return Ok("upstream_bye"),
                    0 => {
                        self.app.write(b"* BYE [UNAVAILABLE] Upstream connection lost\r\n").await?;
                        return Ok("upstream_lost");
                    }
                    _ => r.last_upstream = Instant::now(),
                },
                read = self.app.fill(), if app_ready => match read? {
                    0 => return Ok("app_closed"),
                    _ => last_app = Instant::now(),
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    if now >= idle_deadline {
                        self.app.write(b"* BYE Autologout; idle for too long\r\n").await?;
                        return Ok("idle_timeout");
                    }
                    if owes_response && now >= upstream_deadline {
                        tracing::warn!(credential = %r.cred.id(), timeout = ?cfg.upstream_timeout, "upstream IMAP server stopped answering");
                        self.app.write(b"* BYE [UNAVAILABLE] Upstream server not responding\r\n").await?;
                        return Ok("upstream_timeout");
                    }
                }
                _ = stop_requested(&mut self.shutdown) => {
                    self.app.write(b"* BYE Server shutting down\r\n").await?;
                    return Ok("shutdown");
                }
            }
        }
    }

    // ---- upstream to application ----

    /// Handles one complete upstream response.
    async fn upstream_unit(
        &mut self,
        r: &mut Relay,
        expecting_continuation: bool,
    ) -> Result<Unit, Error> {
        let timeout = self.inner.config.upstream_timeout;
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
        if let Some(rest) = head.strip_prefix(b"* ") {
            if rest.first().is_some_and(u8::is_ascii_digit) {
                stream_response(&mut r.up, &mut self.app, self.inner.config.upstream_timeout)
                    .await?;
                return Ok(Unit::Forwarded);
            }
            let word_len = rest
                .iter()
                .position(|&c| c == b' ' || c == b'\r' || c == b'\n')
                .unwrap_or(rest.len());
            let word = rest[..word_len].to_ascii_uppercase();
            match word.as_slice() {
                b"LIST" | b"LSUB" => self.filtered(r, 3).await?,
                b"STATUS" => self.filtered(r, 1).await?,
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
                _ => {
                    stream_response(&mut r.up, &mut self.app, self.inner.config.upstream_timeout)
                        .await?
                }
            }
            return Ok(Unit::Forwarded);
        }
        self.tagged(r).await
    }

    async fn upstream_line(&mut self, r: &mut Relay) -> Result<Vec<u8>, Error> {
        let cfg = &self.inner.config;
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
    async fn read_unit(&mut self, r: &mut Relay) -> Result<(Vec<u8>, Option<Vec<Item>>), Error> {
        let cfg = &self.inner.config;
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

    /// LIST / LSUB / STATUS: forwarded only when the mailbox (token `name_index`) is allowed.
    async fn filtered(&mut self, r: &mut Relay, name_index: usize) -> Result<(), Error> {
        let (raw, items) = self.read_unit(r).await?;
        let allowed = items
            .as_ref()
            .and_then(|items| items.get(name_index))
            .and_then(Item::astring)
            .is_some_and(|name| r.patterns.allows_wire_lenient(name));
        if allowed {
            self.app.write(&raw).await?;
        }
        Ok(())
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
        if matches!(kind, Some(PendingKind::Idle { .. })) {
            r.idle = None;
        }
        if let (Some(PendingKind::Open(mailbox)), true) = (&kind, ok) {
            self.audit.mailbox_opened(mailbox);
        }
        out.extend_from_slice(b"\r\n");
        let out = rewrite_capability_code(&out, (status_end + 1).min(out.len()), &r.caps);
        self.app.write(&out).await?;
        if kind == Some(PendingKind::Logout) {
            return Ok(Unit::Close("logout"));
        }
        Ok(Unit::Tagged(tag))
    }

    // ---- application to upstream ----

    async fn app_input(&mut self, r: &mut Relay) -> Result<Step, Error> {
        let limits = self.limits();
        if r.idle.as_ref().is_some_and(|i| !i.done_sent) {
            return self.idle_input(r).await;
        }
        let first = self
            .app
            .read_line(limits.max_line, limits.io_timeout, "reading a command")
            .await?;
        let read_only = r.read_only;
        let mut refused_label = "";
        let read = read_command(&mut self.app, first, &limits, |name, uid_sub| {
            let Some(spec) = commands::lookup(name, uid_sub) else {
                return Some(Refusal {
                    status: "BAD",
                    text: "Unknown or unsupported command".into(),
                    reason: "unknown_command",
                });
            };
            refused_label = spec.label;
            match spec.class {
                Class::Admin => Some(Refusal {
                    status: "NO",
                    text: "[NOPERM] Account administration is not allowed through mailcred".into(),
                    reason: "admin",
                }),
                Class::Write if read_only => Some(Refusal {
                    status: "NO",
                    text: "[NOPERM] Read-only access: this credential's policy forbids changes"
                        .into(),
                    reason: "read_only",
                }),
                _ => None,
            }
        })
        .await?;
        match read {
            Read::Rejected(reason) => {
                self.deny(refused_label, reason, None);
                Ok(Step::Continue)
            }
            Read::Close(reason) => {
                self.deny(refused_label, reason, None);
                Ok(Step::Close("closed_by_proxy"))
            }
            Read::Command(cmd) => self.dispatch(r, cmd).await,
            Read::AppendMessage(cmd, marker) => self.append(r, cmd, marker).await,
        }
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
        self.deny("IDLE", "idle_not_done", None);
        match resync(&mut self.app, marker, &limits, "idle_not_done").await? {
            Read::Close(_) => Ok(Step::Close("closed_by_proxy")),
            _ => Ok(Step::Continue),
        }
    }

    async fn dispatch(&mut self, r: &mut Relay, mut cmd: AppCommand) -> Result<Step, Error> {
        let Some(spec) = commands::lookup(&cmd.name, cmd.uid_sub.as_deref()) else {
            reply(
                &mut self.app,
                &cmd.tag,
                "BAD",
                "Unknown or unsupported command",
            )
            .await?;
            return Ok(Step::Continue);
        };
        self.count(spec.label);
        let tag = cmd.tag.clone();
        match spec.label {
            "CAPABILITY" => {
                self.app
                    .write(format!("* CAPABILITY {}\r\n", r.caps).as_bytes())
                    .await?;
                reply(&mut self.app, &tag, "OK", "CAPABILITY completed").await?;
                return Ok(Step::Continue);
            }
            "ID" => {
                self.answer_id(&tag).await?;
                return Ok(Step::Continue);
            }
            "LOGIN" | "AUTHENTICATE" => {
                reply(&mut self.app, &tag, "BAD", "Already logged in").await?;
                return Ok(Step::Continue);
            }
            "STARTTLS" => {
                reply(&mut self.app, &tag, "BAD", "STARTTLS is not offered").await?;
                return Ok(Step::Continue);
            }
            "ENABLE" => return self.enable(r, cmd).await,
            _ => {}
        }
        let opened = match self
            .check_mailboxes(&r.patterns, &cmd, spec.mailboxes, spec.label)
            .await?
        {
            Ok(first) => first,
            Err(()) => return Ok(Step::Continue),
        };
        let kind = match spec.label {
            "SELECT" | "EXAMINE" => PendingKind::Open(opened.unwrap_or_default()),
            "IDLE" => PendingKind::Idle { reject: false },
            "LOGOUT" => PendingKind::Logout,
            _ => PendingKind::Plain,
        };
        if spec.label == "SELECT" && r.read_only {
            // The application keeps its SELECT semantics minus writes; the tagged OK it gets
            // carries [READ-ONLY] from upstream, as RFC 3501 allows for SELECT.
            let span = cmd.name_span.clone();
            cmd.segments[0]
                .text
                .splice(span, b"EXAMINE".iter().copied());
        }
        self.forward(r, &cmd, kind).await
    }

    /// Checks the mailbox arguments. `Err(())` when refused (already answered).
    async fn check_mailboxes(
        &mut self,
        patterns: &MailboxPatterns,
        cmd: &AppCommand,
        which: MailboxArgs,
        label: &'static str,
    ) -> Result<Result<Option<String>, ()>, Error> {
        let indices: &[usize] = match which {
            MailboxArgs::None => &[],
            MailboxArgs::First => &[0],
            MailboxArgs::Second => &[1],
            MailboxArgs::FirstTwo => &[0, 1],
        };
        let mut first = None;
        for &i in indices {
            let Some(name) = cmd.items.get(i).and_then(Item::astring) else {
                reply(&mut self.app, &cmd.tag, "BAD", "Missing mailbox name").await?;
                self.deny(label, "syntax", None);
                return Ok(Err(()));
            };
            match patterns.check_wire(name) {
                Ok(Some(decoded)) => {
                    first.get_or_insert(decoded);
                }
                Ok(None) => {
                    let shown = String::from_utf8_lossy(name).into_owned();
                    self.deny(label, "mailbox", Some(&shown));
                    reply(
                        &mut self.app,
                        &cmd.tag,
                        "NO",
                        "[NOPERM] Mailbox not allowed by this credential's policy",
                    )
                    .await?;
                    return Ok(Err(()));
                }
                Err(NameError::Invalid) => {
                    self.deny(label, "mailbox_name_invalid", None);
                    reply(
                        &mut self.app,
                        &cmd.tag,
                        "BAD",
                        "Invalid mailbox name (modified UTF-7 expected)",
                    )
                    .await?;
                    return Ok(Err(()));
                }
            }
        }
        Ok(Ok(first))
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
            segments: vec![crate::wire::command::Segment {
                text,
                literal: None,
            }],
            ..cmd
        };
        self.forward(r, &rebuilt, PendingKind::Plain).await
    }

    async fn forward(
        &mut self,
        r: &mut Relay,
        cmd: &AppCommand,
        kind: PendingKind,
    ) -> Result<Step, Error> {
        if r.pending.is_empty() {
            r.last_upstream = Instant::now();
        }
        if kind == (PendingKind::Idle { reject: false }) {
            r.idle = Some(Idle {
                tag: cmd.tag.clone(),
                continued: false,
                done_sent: false,
            });
        }
        r.pending.push(Pending {
            tag: cmd.tag.clone(),
            kind,
        });
        for seg in &cmd.segments {
            r.up.write(&seg.text).await?;
            if let Some(literal) = &seg.literal {
                match self
                    .literal_to_upstream(r, literal.len() as u64, &cmd.tag)
                    .await?
                {
                    LiteralGo::Send => r.up.write(literal).await?,
                    LiteralGo::Answered => return Ok(Step::Continue),
                    LiteralGo::Close(o) => return Ok(Step::Close(o)),
                }
            }
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
    async fn append(
        &mut self,
        r: &mut Relay,
        cmd: AppCommand,
        marker: LiteralMarker,
    ) -> Result<Step, Error> {
        let limits = self.limits();
        self.count("APPEND");
        if let Err(()) = self
            .check_mailboxes(&r.patterns, &cmd, MailboxArgs::First, "APPEND")
            .await?
        {
            return match resync(&mut self.app, Some(marker), &limits, "mailbox").await? {
                Read::Close(_) => Ok(Step::Close("closed_by_proxy")),
                _ => Ok(Step::Continue),
            };
        }
        if r.pending.is_empty() {
            r.last_upstream = Instant::now();
        }
        r.pending.push(Pending {
            tag: cmd.tag.clone(),
            kind: PendingKind::Plain,
        });
        for seg in &cmd.segments {
            r.up.write(&seg.text).await?;
            if let Some(literal) = &seg.literal {
                match self
                    .literal_to_upstream(r, literal.len() as u64, &cmd.tag)
                    .await?
                {
                    LiteralGo::Send => r.up.write(literal).await?,
                    LiteralGo::Answered => return self.skip_refused_append(marker).await,
                    LiteralGo::Close(o) => return Ok(Step::Close(o)),
                }
            }
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
                self.deny("APPEND", "syntax", None);
                self.app
                    .write(b"* BYE Only single-message APPEND is supported\r\n")
                    .await?;
                Ok(Step::Close("closed_by_proxy"))
            }
        }
    }

    /// Upstream refused an APPEND before its message: skip what the application still sends.
    async fn skip_refused_append(&mut self, marker: LiteralMarker) -> Result<Step, Error> {
        let limits = self.limits();
        if marker.synchronizing {
            return Ok(Step::Continue);
        }
        match resync(&mut self.app, Some(marker), &limits, "upstream_refused").await? {
            Read::Close(_) => Ok(Step::Close("closed_by_proxy")),
            _ => Ok(Step::Continue),
        }
    }
}

/// Completes once shutdown was requested (never, if the proxy is gone without asking).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

enum LiteralGo {
    Send,
    Answered,
    Close(&'static str),
}

/// Replaces a `[CAPABILITY ...]` response code starting at `at` with the proxy's own list.
fn rewrite_capability_code(raw: &[u8], at: usize, caps: &str) -> Vec<u8> {
    let Some(text) = raw.get(at..) else {
        return raw.to_vec();
    };
    let Some(code) = capability_code(text) else {
        return raw.to_vec();
    };
    let after = at + "[CAPABILITY ".len() + code.len();
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..at]);
    out.extend_from_slice(b"[CAPABILITY ");
    out.extend_from_slice(caps.as_bytes());
    out.extend_from_slice(&raw[after..]);
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_codes_are_rewritten() {
        let out = rewrite_capability_code(
            b"a1 OK [CAPABILITY IMAP4rev1 AUTH=PLAIN COMPRESS=DEFLATE] Logged in\r\n",
            6,
            "IMAP4rev1 IDLE",
        );
        assert_eq!(out, b"a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n");
        let same = rewrite_capability_code(b"* OK [READ-ONLY] x\r\n", 5, "X");
        assert_eq!(same, b"* OK [READ-ONLY] x\r\n");
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokeN"));
        assert!(!constant_time_eq(b"token", b"toke"));
    }
}
