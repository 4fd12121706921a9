//! One application session: local greeting and login, upstream login with the credential,
//! then the relay with the policy filter.
//!
//! A session is one task that owns both connections. Upstream responses are handled one
//! whole response at a time (FETCH data streams through without being stored), application
//! commands one whole command at a time, so the proxy's own answers (denials, CAPABILITY, ID)
//! never land inside an upstream response.
//!
//! Files: `state` (what a session holds), `login` (before login), `local` (answers the proxy
//! gives itself), `relay` (the loop after login), `commands` (the per-command policy),
//! `policy` (policy edits reaching open sessions), `mailboxes` (mailbox arguments and
//! LIST/STATUS filtering), `forward` (commands and literals to upstream), `responses`
//! (upstream responses to the application).

mod account;
mod app_login;
mod commands;
mod forward;
mod local;
mod login;
mod mailboxes;
mod policy;
mod relay;
mod responses;
mod state;

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::audit::SessionAudit;
use crate::command_table::PRE_AUTH_CAPABILITIES;
use crate::context::SessionContext;
use crate::error::{Error, Side};
use crate::metrics::DirectionLabels;
use crate::outcome::Outcome;
use crate::wire::conn::Conn;
use state::Session;

/// Application read buffer to start with; it grows to the line bound only for long lines.
const APP_INITIAL_BUF: usize = 4 * 1024;
/// Application write buffer: responses are sent in chunks up to this size.
const APP_WRITE_BUF: usize = 32 * 1024;

pub(crate) async fn run(ctx: &SessionContext, stream: TcpStream, shutdown: watch::Receiver<bool>) {
    let cfg = &ctx.config;
    let app = Conn::new(
        stream,
        Side::App,
        APP_INITIAL_BUF,
        cfg.max_line_bytes + 2,
        APP_WRITE_BUF,
        cfg.app_io_timeout,
    );
    let mut session = Session {
        ctx,
        app,
        audit: SessionAudit::new(),
        shutdown,
        upstream_bytes: (0, 0),
        account: None,
    };
    ctx.metrics.active_sessions.inc();
    let outcome = match session.run().await {
        Ok(outcome) => outcome,
        Err(e) => {
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
            Outcome::Failed(e.metric_label())
        }
    };
    session
        .app
        .shutdown(cfg.app_io_timeout.min(Duration::from_secs(5)))
        .await;
    ctx.metrics.active_sessions.dec();
    ctx.count_session(outcome);
    ctx.metrics
        .session_seconds
        .observe(session.audit.started.elapsed().as_secs_f64());
    let to_app = session.app.bytes_written;
    let from_app = session.app.bytes_read;
    for (direction, bytes) in [
        ("to_app", to_app),
        ("to_upstream", session.upstream_bytes.1),
    ] {
        ctx.metrics
            .bytes
            .get_or_create(&DirectionLabels { direction })
            .inc_by(bytes);
    }
    session.audit.emit(&cfg.pod, outcome, to_app, from_app);
}

impl Session<'_> {
    async fn run(&mut self) -> Result<Outcome, Error> {
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
        if !relay.upstream_said_bye
            && result
                .as_ref()
                .map(|o| *o != Outcome::Logout)
                .unwrap_or(true)
        {
            // Leave upstream cleanly when the application did not.
            let _ = relay.up.write(b"m9 LOGOUT\r\n").await;
        }
        relay.up.shutdown(Duration::from_secs(2)).await;
        result
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
