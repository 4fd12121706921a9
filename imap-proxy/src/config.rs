//! Limits and timeouts of the IMAP proxy. Every wait has one, every buffer a bound.

use std::time::Duration;

use mailcred_core::MailPassword;

use crate::error::Error;

pub struct ImapProxyConfig {
    /// Pod name for audit lines (the runtime passes its own).
    pub pod: String,
    /// When set, the application's LOGIN / AUTHENTICATE PLAIN password must equal this token;
    /// otherwise any login is accepted (loopback-only listener, one pod). Required in
    /// account-set mode ([`ImapProxyConfig::check_account_mode`]).
    pub local_token: Option<MailPassword>,
    /// Longest command or response line handled in memory (RFC 7162 recommends >= 8192).
    pub max_line_bytes: usize,
    /// Longest literal inside a command other than APPEND's message (mailbox names, search
    /// strings); such literals are read into memory.
    pub max_inline_literal_bytes: usize,
    /// Everything of one command held in memory at once (lines and inline literals).
    pub max_command_bytes: usize,
    /// Longest APPEND message; streamed, never held whole.
    pub max_append_bytes: u64,
    /// RFC 3501 §5.4 autologout: at least 30 minutes without a command from the application.
    pub idle_timeout: Duration,
    /// From connect until the application has logged in.
    pub login_timeout: Duration,
    /// Connect, TLS, login, and every read while upstream owes a response.
    pub upstream_timeout: Duration,
    /// Writing to the application (it must keep reading) and reading the rest of a command.
    pub app_io_timeout: Duration,
    /// Commands forwarded but not yet answered; past it, the application's input waits.
    pub max_pending_commands: usize,
    /// Concurrent application connections; more are answered `* BYE` and closed.
    pub max_connections: usize,
    /// Send literals upstream as LITERAL+ (non-synchronizing) when upstream offers it; when
    /// false, every literal waits for upstream's continuation request (interoperability checks).
    pub upstream_literal_plus: bool,
    /// Serve on a non-loopback address (DESIGN invariant 2: only when told explicitly).
    pub allow_non_loopback: bool,
    /// How long sessions get to finish after shutdown was requested.
    pub shutdown_grace: Duration,
}

impl Default for ImapProxyConfig {
    fn default() -> Self {
        Self {
            pod: String::new(),
            local_token: None,
            max_line_bytes: 64 * 1024,
            max_inline_literal_bytes: 64 * 1024,
            max_command_bytes: 256 * 1024,
            max_append_bytes: 25 * 1024 * 1024,
            idle_timeout: Duration::from_secs(30 * 60),
            login_timeout: Duration::from_secs(60),
            upstream_timeout: Duration::from_secs(60),
            app_io_timeout: Duration::from_secs(120),
            max_pending_commands: 256,
            max_connections: 256,
            upstream_literal_plus: true,
            allow_non_loopback: false,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ImapProxyConfig {
    /// Whether these settings can serve an account set: the application must log in with
    /// the local token, because the account name alone is no secret. The sidecar calls this
    /// (or `ImapProxy::with_accounts`) at startup and reports the error.
    pub fn check_account_mode(&self) -> Result<(), Error> {
        match &self.local_token {
            Some(token) if !token.expose().is_empty() => Ok(()),
            _ => Err(Error::Config(
                "account-set mode needs a local token: without one any process of the pod could read any account's mail; give the sidecar the app token file".into(),
            )),
        }
    }
}
