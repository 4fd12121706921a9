//! What a session holds: the application connection and audit before login, and the relay
//! state after it (upstream connection, the policy in force, commands in flight).

use std::sync::Arc;
use std::time::Instant;

use mailcred_core::crd::{ImapAccess, ImapPolicy};
use mailcred_core::credential::UsableCredential;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::audit::SessionAudit;
use crate::command_table::post_auth_capabilities;
use crate::context::SessionContext;
use crate::mailbox::MailboxPatterns;
use crate::outcome::{Outcome, Reason};
use crate::upstream::UpstreamIo;
use crate::wire::command::Limits;
use crate::wire::conn::Conn;

pub(super) struct Session<'a> {
    pub ctx: &'a SessionContext,
    pub app: Conn<TcpStream>,
    pub audit: SessionAudit,
    pub shutdown: watch::Receiver<bool>,
    /// (read, written) on the upstream connection, kept for the session's end.
    pub upstream_bytes: (u64, u64),
    /// Account-set mode: the account the application's login picked.
    pub account: Option<String>,
}

/// The IMAP policy a session enforces now: the one it logged in with, replaced when the
/// credential's policy changes (see `session/policy.rs`).
pub(super) struct ActivePolicy {
    pub imap: ImapPolicy,
    pub access: ImapAccess,
    pub patterns: MailboxPatterns,
}

impl ActivePolicy {
    pub fn new(imap: ImapPolicy) -> Self {
        Self {
            access: imap.access(),
            patterns: MailboxPatterns::new(&imap.allowed_mailboxes),
            imap,
        }
    }
}

/// The mailbox upstream has selected for this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Selected {
    pub name: String,
    /// Opened with SELECT (changes possible), not EXAMINE.
    pub writable: bool,
}

/// State of the relay after login.
pub(super) struct Relay {
    pub up: Conn<UpstreamIo>,
    pub cred: Arc<UsableCredential>,
    /// Upstream's capabilities after login, upper-cased.
    pub upstream_caps: Vec<String>,
    /// What the application is told (CAPABILITY and `[CAPABILITY ...]` codes).
    pub caps: String,
    pub policy: ActivePolicy,
    pub literal_plus: bool,
    pub pending: Vec<Pending>,
    pub idle: Option<Idle>,
    pub selected: Option<Selected>,
    pub last_upstream: Instant,
    pub upstream_said_bye: bool,
}

impl Relay {
    pub fn upstream_has(&self, cap: &str) -> bool {
        self.upstream_caps.iter().any(|c| c == cap)
    }

    /// Capabilities for the access level: UIDPLUS and MOVE only with read-write access.
    pub fn capabilities_for(upstream_caps: &[String], access: ImapAccess) -> String {
        post_auth_capabilities(upstream_caps, access == ImapAccess::ReadWrite)
    }
}

pub(super) struct Pending {
    pub tag: Vec<u8>,
    pub kind: PendingKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PendingKind {
    Plain,
    /// SELECT or EXAMINE of this (decoded) mailbox; `writable` for SELECT.
    Open {
        mailbox: String,
        writable: bool,
    },
    /// CLOSE or UNSELECT: no mailbox selected once it succeeds.
    Deselect,
    Idle {
        reject: bool,
    },
    Logout,
}

pub(super) struct Idle {
    pub tag: Vec<u8>,
    pub continued: bool,
    pub done_sent: bool,
}

/// What handling one upstream response produced.
pub(super) enum Unit {
    Forwarded,
    Continuation,
    Tagged(Vec<u8>),
    Close(Outcome),
}

/// What handling one application command produced.
pub(super) enum Step {
    Continue,
    Close(Outcome),
}

/// Whether a literal may go upstream now.
pub(super) enum LiteralGo {
    Send,
    /// Upstream answered the command before asking for the literal.
    Answered,
    Close(Outcome),
}

impl Session<'_> {
    pub fn limits(&self) -> Limits {
        let cfg = &self.ctx.config;
        Limits {
            max_line: cfg.max_line_bytes,
            max_inline_literal: cfg.max_inline_literal_bytes,
            max_command: cfg.max_command_bytes,
            max_append: cfg.max_append_bytes,
            io_timeout: cfg.app_io_timeout,
        }
    }

    pub fn deny(&mut self, command: &str, reason: Reason, mailbox: Option<&str>) {
        self.ctx.count_denial(reason);
        self.audit
            .denial(&self.ctx.config.pod, command, reason, mailbox);
    }

    pub fn count(&mut self, label: &'static str) {
        self.audit.command(label);
        self.ctx.count_command(label);
    }
}
