//! Before login: the commands the proxy answers itself, the application's login (checked
//! against the local token, never sent upstream; `app_login.rs`), and the upstream login
//! with the credential.

use std::time::Instant;

use super::state::{ActivePolicy, Relay, Session};
use super::stop_requested;
use crate::command_table::{Command, PRE_AUTH_CAPABILITIES};
use crate::error::{Error, Side};
use crate::outcome::{Outcome, Reason};
use crate::upstream::{self, LoginLimits};
use crate::wire::command::{Read, Refusal, read_command};
use crate::wire::skip::resync;
use crate::wire::write::reply;

/// Failed local logins before the connection is closed.
const MAX_LOGIN_FAILURES: u32 = 3;

impl Session<'_> {
    /// Until the application has logged in. `Ok(Err(outcome))` ends the session.
    pub(super) async fn pre_auth(&mut self) -> Result<Result<Relay, Outcome>, Error> {
        let limits = self.limits();
        let login_timeout = self.ctx.config.login_timeout;
        let mut failures = 0;
        loop {
            self.app.flush().await?;
            let shutdown = &mut self.shutdown;
            let read = tokio::select! {
                read = self.app.read_line(limits.max_line, login_timeout, "waiting for login") => read,
                _ = stop_requested(shutdown) => {
                    self.app.write(b"* BYE Server shutting down\r\n").await?;
                    return Ok(Err(Outcome::Shutdown));
                }
            };
            let first = match read {
                Ok(line) => line,
                Err(Error::Timeout { .. }) => {
                    self.app
                        .write(b"* BYE Autologout; no login in time\r\n")
                        .await?;
                    return Ok(Err(Outcome::LoginTimeout));
                }
                Err(Error::Closed { side: Side::App }) => return Ok(Err(Outcome::AppClosed)),
                Err(e) => return Err(e),
            };
            let read =
                read_command(
                    &mut self.app,
                    first,
                    &limits,
                    |name, uid_sub| match Command::parse(name, uid_sub) {
                        Some(spec) if spec.before_login => None,
                        _ => Some(Refusal {
                            status: "BAD",
                            text: "Log in first".into(),
                            reason: Reason::NotAuthenticated,
                        }),
                    },
                )
                .await?;
            let cmd = match read {
                Read::Command(cmd) => cmd,
                Read::Rejected(reason) => {
                    self.deny("", reason, None);
                    continue;
                }
                Read::Close(reason) => {
                    self.deny("", reason, None);
                    return Ok(Err(Outcome::ClosedByProxy));
                }
                Read::AppendMessage(cmd, marker) => {
                    // Unreachable through the precheck; answered anyway to stay in sync.
                    reply(&mut self.app, &cmd.tag, "BAD", "Log in first").await?;
                    let skipped = resync(
                        &mut self.app,
                        Some(marker),
                        &limits,
                        Reason::NotAuthenticated,
                    )
                    .await?;
                    if let Read::Close(_) = skipped {
                        return Ok(Err(Outcome::ClosedByProxy));
                    }
                    continue;
                }
            };
            let tag = cmd.tag.clone();
            let command = Command::parse(&cmd.name, cmd.uid_sub.as_deref()).map(|s| s.command);
            match command {
                Some(Command::Capability) => {
                    self.answer_capability(&tag, PRE_AUTH_CAPABILITIES).await?
                }
                Some(Command::Noop) => reply(&mut self.app, &tag, "OK", "NOOP completed").await?,
                Some(Command::Logout) => {
                    self.app.write(b"* BYE Logging out\r\n").await?;
                    reply(&mut self.app, &tag, "OK", "LOGOUT completed").await?;
                    return Ok(Err(Outcome::Logout));
                }
                Some(Command::Id) => self.answer_id(&tag).await?,
                Some(Command::Starttls) => {
                    reply(
                        &mut self.app,
                        &tag,
                        "BAD",
                        "STARTTLS is not offered: the proxy listens on loopback only",
                    )
                    .await?
                }
                Some(Command::Login | Command::Authenticate) => {
                    let Some(login) = self.app_login(&cmd).await? else {
                        continue;
                    };
                    if !self.login_accepted(&login) {
                        failures += 1;
                        self.deny("LOGIN", Reason::LocalAuth, None);
                        reply(
                            &mut self.app,
                            &tag,
                            "NO",
                            "[AUTHENTICATIONFAILED] Invalid credentials",
                        )
                        .await?;
                        if failures >= MAX_LOGIN_FAILURES {
                            self.app.write(b"* BYE Too many failed logins\r\n").await?;
                            return Ok(Err(Outcome::LocalAuthFailed));
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

    /// Fetches the credential and logs in upstream. Answers the application's LOGIN either
    /// way; `None` when it failed (the application may try again).
    async fn login_upstream(&mut self, tag: &[u8]) -> Result<Option<Relay>, Error> {
        let cfg = &self.ctx.config;
        let Some(source) = self.source() else {
            // Account-set mode: the account went away between the check and now.
            self.deny("LOGIN", Reason::CredentialUnavailable, None);
            let text =
                "[UNAVAILABLE] Credential unavailable (account_unavailable); try again later";
            reply(&mut self.app, tag, "NO", text).await?;
            return Ok(None);
        };
        let cred = match tokio::time::timeout(cfg.upstream_timeout, source.credential()).await {
            Ok(Ok(cred)) => cred,
            Ok(Err(e)) => {
                let label = e.metric_label();
                tracing::warn!(error = %e, label, "IMAP login: credential unavailable");
                self.deny("LOGIN", Reason::CredentialUnavailable, None);
                let text =
                    format!("[UNAVAILABLE] Credential unavailable ({label}); try again later");
                reply(&mut self.app, tag, "NO", &text).await?;
                return Ok(None);
            }
            Err(_) => {
                tracing::warn!(timeout = ?cfg.upstream_timeout, "IMAP login: credential source did not answer in time");
                self.deny("LOGIN", Reason::CredentialUnavailable, None);
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
            self.deny("LOGIN", Reason::ImapDisabled, None);
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
            self.deny("LOGIN", Reason::NoImapEndpoint, None);
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
        let mut up = match upstream::connect_and_login(endpoint, &cred.username, &cred.auth, limits)
            .await
        {
            Ok(up) => up,
            Err(e) => {
                // The error carries no upstream text from the login (it may echo the secret).
                if let Error::UpstreamAuth { refusal, .. } = &e {
                    self.ctx.metrics.upstream_auth_failures.inc();
                    tracing::error!(
                        credential = %cred.id(),
                        username = %cred.username,
                        protocol = "imap",
                        reply_code = refusal.reply_code(),
                        refusal = %refusal,
                        "the upstream refused the credential's login: re-seal with the right password, or check the account"
                    );
                } else {
                    tracing::warn!(credential = %cred.id(), error = %e, "IMAP upstream login failed");
                }
                let label = e.metric_label();
                self.deny("LOGIN", Reason::UpstreamLogin(label), None);
                reply(
                    &mut self.app,
                    tag,
                    "NO",
                    &format!(
                        "[UNAVAILABLE] Upstream IMAP server unavailable ({label}); try again later"
                    ),
                )
                .await?;
                return Ok(None);
            }
        };
        self.ctx
            .metrics
            .upstream_login_seconds
            .observe(started.elapsed().as_secs_f64());
        self.audit.upstream_user = Some(cred.username.clone());
        self.count("LOGIN");
        // From here on every byte to the application passes the scrubber: upstream may echo
        // the login at any time.
        self.app.set_scrubber(std::mem::take(&mut up.scrubber));
        let policy = ActivePolicy::new(policy.clone());
        let caps = Relay::capabilities_for(&up.capabilities, policy.access);
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
            upstream_caps: up.capabilities,
            policy,
            cred: cred.clone(),
            caps,
            literal_plus,
            pending: Vec::new(),
            idle: None,
            selected: None,
            last_upstream: Instant::now(),
            upstream_said_bye: false,
        }))
    }
}
