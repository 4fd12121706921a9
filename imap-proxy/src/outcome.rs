//! How a session ended and why a command was refused: the labels of metrics and audit lines,
//! as enums so that a typo cannot make a new label and every label is listed once.

/// How a session ended (the `outcome` label of `mailcred_imap_sessions_total` and of the
/// audit line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Logout,
    Shutdown,
    LoginTimeout,
    IdleTimeout,
    AppClosed,
    /// The proxy closed the connection (a refused literal it could not skip, MULTIAPPEND...).
    ClosedByProxy,
    LocalAuthFailed,
    TooManyConnections,
    UpstreamBye,
    UpstreamLost,
    UpstreamTimeout,
    /// The credential's policy changed so that the open session could not go on.
    PolicyChanged,
    /// Account-set mode: the session's account went away (deleted, access revoked, lifetime
    /// ended).
    AccountUnavailable,
    /// The session failed with this error (its [`crate::Error::metric_label`]).
    Failed(&'static str),
}

impl Outcome {
    /// Every outcome without an error label, for zero-initialised counters.
    pub const FIXED: [Outcome; 13] = [
        Outcome::Logout,
        Outcome::Shutdown,
        Outcome::LoginTimeout,
        Outcome::IdleTimeout,
        Outcome::AppClosed,
        Outcome::ClosedByProxy,
        Outcome::LocalAuthFailed,
        Outcome::TooManyConnections,
        Outcome::UpstreamBye,
        Outcome::UpstreamLost,
        Outcome::UpstreamTimeout,
        Outcome::PolicyChanged,
        Outcome::AccountUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Logout => "logout",
            Outcome::Shutdown => "shutdown",
            Outcome::LoginTimeout => "login_timeout",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::AppClosed => "app_closed",
            Outcome::ClosedByProxy => "closed_by_proxy",
            Outcome::LocalAuthFailed => "local_auth_failed",
            Outcome::TooManyConnections => "too_many_connections",
            Outcome::UpstreamBye => "upstream_bye",
            Outcome::UpstreamLost => "upstream_lost",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::PolicyChanged => "policy_changed",
            Outcome::AccountUnavailable => "account_unavailable",
            Outcome::Failed(label) => label,
        }
    }
}

/// Why the proxy refused a command or a login (the `reason` label of
/// `mailcred_imap_denials_total` and of `imap_denied` audit lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotAuthenticated,
    LocalAuth,
    CredentialUnavailable,
    ImapDisabled,
    NoImapEndpoint,
    /// The upstream login failed with this error (its [`crate::Error::metric_label`]).
    UpstreamLogin(&'static str),
    UnknownCommand,
    Admin,
    ReadOnly,
    SeenOnly,
    Mailbox,
    MailboxNameInvalid,
    Syntax,
    IdleNotDone,
    LineTooLong,
    BadTag,
    CommandTooLong,
    LiteralTooLarge,
    UpstreamRefused,
    PolicyChanged,
}

impl Reason {
    /// Every reason without an error label, for zero-initialised counters.
    pub const FIXED: [Reason; 19] = [
        Reason::NotAuthenticated,
        Reason::LocalAuth,
        Reason::CredentialUnavailable,
        Reason::ImapDisabled,
        Reason::NoImapEndpoint,
        Reason::UnknownCommand,
        Reason::Admin,
        Reason::ReadOnly,
        Reason::SeenOnly,
        Reason::Mailbox,
        Reason::MailboxNameInvalid,
        Reason::Syntax,
        Reason::IdleNotDone,
        Reason::LineTooLong,
        Reason::BadTag,
        Reason::CommandTooLong,
        Reason::LiteralTooLarge,
        Reason::UpstreamRefused,
        Reason::PolicyChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotAuthenticated => "not_authenticated",
            Reason::LocalAuth => "local_auth",
            Reason::CredentialUnavailable => "credential_unavailable",
            Reason::ImapDisabled => "imap_disabled",
            Reason::NoImapEndpoint => "no_imap_endpoint",
            Reason::UpstreamLogin(label) => label,
            Reason::UnknownCommand => "unknown_command",
            Reason::Admin => "admin",
            Reason::ReadOnly => "read_only",
            Reason::SeenOnly => "seen_only",
            Reason::Mailbox => "mailbox",
            Reason::MailboxNameInvalid => "mailbox_name_invalid",
            Reason::Syntax => "syntax",
            Reason::IdleNotDone => "idle_not_done",
            Reason::LineTooLong => "line_too_long",
            Reason::BadTag => "bad_tag",
            Reason::CommandTooLong => "command_too_long",
            Reason::LiteralTooLarge => "literal_too_large",
            Reason::UpstreamRefused => "upstream_refused",
            Reason::PolicyChanged => "policy_changed",
        }
    }
}

/// How an application's login in account-set mode ended (the `outcome` label of
/// `mailcred_imap_account_logins_total`; the application hears the same NO for every refusal).
pub use mailcred_core::local_login::AccountLogin;
