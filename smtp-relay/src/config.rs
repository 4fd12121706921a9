//! Settings of the relay that come from the sidecar's command line, not from the credential.

use std::time::Duration;

use crate::error::Error;

/// RFC 5321's minimum line length (4.5.3.1.4), CRLF included.
pub const RFC_MAX_LINE: usize = 1000;
/// The most a deployment may raise the command-line limit to.
pub const MAX_LINE_CEILING: usize = 8192;

#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Name in the greeting and EHLO reply.
    pub hostname: String,
    /// Pod name, for audit lines.
    pub pod: String,
    /// Longest command line accepted, CRLF included (1000..=8192).
    pub max_line: usize,
    /// Wait for the next command (RFC 5321 4.5.3.2.7 suggests 5 min).
    pub command_timeout: Duration,
    /// Wait for the next DATA bytes (RFC 5321 4.5.3.2.6 suggests 3 min).
    pub data_timeout: Duration,
    /// Bound on obtaining the credential (KMS decrypt included).
    pub credential_timeout: Duration,
    /// Bound on each upstream step (connect, handshake, each reply, each write).
    pub upstream_timeout: Duration,
    /// Bound on writing replies to the application: a client that never reads them
    /// cannot hold its connection past this.
    pub write_timeout: Duration,
    /// Message content held in memory by all sessions together, in bytes; a message that
    /// would go past it is refused with 452 4.3.1 (see docs/reliability.md).
    pub message_memory: usize,
    /// Pooled upstream connections kept per credential.
    pub upstream_pool_size: u32,
    /// Pooled upstream connections kept over all credentials together (account sets: many
    /// accounts, each with its own connections); past it the longest idle one is closed.
    pub upstream_idle_total: u32,
    /// Idle pooled upstream connections are closed after this.
    pub upstream_idle: Duration,
    /// Concurrent application connections.
    pub max_connections: usize,
    /// On shutdown, how long in-flight sessions may take to finish.
    pub shutdown_grace: Duration,
    /// When set, the application's AUTH must present this password; otherwise AUTH is
    /// accepted and ignored (frameworks that insist on authenticating). Required in
    /// account-set mode ([`RelayConfig::check_account_mode`]).
    pub local_token: Option<String>,
    /// Serve on a non-loopback address (`--unsafe-listen-any`; DESIGN invariant 2).
    pub allow_non_loopback: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            pod: String::new(),
            max_line: RFC_MAX_LINE,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            credential_timeout: Duration::from_secs(15),
            upstream_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            message_memory: 64 * 1024 * 1024,
            upstream_pool_size: 8,
            upstream_idle_total: 64,
            upstream_idle: Duration::from_secs(60),
            max_connections: 256,
            shutdown_grace: Duration::from_secs(30),
            local_token: None,
            allow_non_loopback: false,
        }
    }
}

impl RelayConfig {
    /// The line limit clamped to what RFC 5321 requires and what we allow.
    pub fn effective_max_line(&self) -> usize {
        self.max_line.clamp(RFC_MAX_LINE, MAX_LINE_CEILING)
    }

    /// Whether these settings can serve an account set: the application must authenticate
    /// with a non-empty local token, because the account name alone is no secret. The
    /// sidecar calls this (or `SmtpRelay::with_accounts`) at startup and reports the error.
    pub fn check_account_mode(&self) -> Result<(), Error> {
        match &self.local_token {
            Some(token) if !token.is_empty() => Ok(()),
            _ => Err(Error::AccountModeWithoutToken),
        }
    }
}
