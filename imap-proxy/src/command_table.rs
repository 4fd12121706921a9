//! Every IMAP command the proxy knows, in one table for both phases: whether it may come
//! before login, how it is treated after login (answered locally, forwarded, forwarded only
//! with enough access, never), and which arguments name a mailbox. A command not in the
//! table is unknown and refused (BAD) in either phase.

/// A command the proxy knows (`UID x` sub-commands are commands of their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Capability,
    Noop,
    Logout,
    Login,
    Authenticate,
    Id,
    Starttls,
    Enable,
    Select,
    Examine,
    Status,
    List,
    Lsub,
    Namespace,
    Check,
    Close,
    Unselect,
    Fetch,
    Search,
    Idle,
    Store,
    Copy,
    Move,
    Append,
    Expunge,
    Create,
    Delete,
    Rename,
    Subscribe,
    Unsubscribe,
    SetAcl,
    DeleteAcl,
    SetQuota,
    SetMetadata,
    UidFetch,
    UidSearch,
    UidCopy,
    UidMove,
    UidStore,
    UidExpunge,
}

/// How the proxy treats a command once the application is logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Answered by the proxy (CAPABILITY, ID, LOGIN again...).
    Local,
    /// Forwarded as is (after the mailbox check): safe under read-only.
    Read,
    /// Changes flags: forwarded with read-write access, and with seen-only access when the
    /// only flag it touches is `\Seen`.
    Flags,
    /// Any other change: forwarded only with read-write access.
    Write,
    /// Never forwarded: account administration is not an application's business.
    Admin,
}

/// Which arguments name a mailbox that must be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxArgs {
    None,
    /// SELECT, EXAMINE, STATUS, APPEND, CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE.
    First,
    /// COPY, MOVE: `sequence-set mailbox`.
    Second,
    /// RENAME: both.
    FirstTwo,
}

impl MailboxArgs {
    /// Argument positions (after the command name) that name a mailbox.
    pub fn positions(self) -> &'static [usize] {
        match self {
            MailboxArgs::None => &[],
            MailboxArgs::First => &[0],
            MailboxArgs::Second => &[1],
            MailboxArgs::FirstTwo => &[0, 1],
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub command: Command,
    /// Upper-case wire name; `UID x` rows hold `x` and have `uid` set.
    name: &'static [u8],
    uid: bool,
    /// Metric and audit label (upper case, `UID FETCH` style).
    pub label: &'static str,
    /// Allowed before the application has logged in (answered by the proxy then).
    pub before_login: bool,
    pub class: Class,
    pub mailboxes: MailboxArgs,
}

const fn row(
    command: Command,
    name: &'static [u8],
    label: &'static str,
    before_login: bool,
    class: Class,
    mailboxes: MailboxArgs,
) -> Spec {
    Spec {
        command,
        name,
        uid: false,
        label,
        before_login,
        class,
        mailboxes,
    }
}

const fn uid(
    command: Command,
    name: &'static [u8],
    label: &'static str,
    class: Class,
    mailboxes: MailboxArgs,
) -> Spec {
    Spec {
        uid: true,
        ..row(command, name, label, false, class, mailboxes)
    }
}

use Class::{Admin, Flags, Local, Read, Write};
use Command as C;
use MailboxArgs as M;

/// The table. Adding a command here is the only way to let it through.
const TABLE: &[Spec] = &[
    row(
        C::Capability,
        b"CAPABILITY",
        "CAPABILITY",
        true,
        Local,
        M::None,
    ),
    row(C::Noop, b"NOOP", "NOOP", true, Read, M::None),
    row(C::Logout, b"LOGOUT", "LOGOUT", true, Read, M::None),
    row(C::Login, b"LOGIN", "LOGIN", true, Local, M::None),
    row(
        C::Authenticate,
        b"AUTHENTICATE",
        "AUTHENTICATE",
        true,
        Local,
        M::None,
    ),
    row(C::Id, b"ID", "ID", true, Local, M::None),
    row(C::Starttls, b"STARTTLS", "STARTTLS", true, Local, M::None),
    row(C::Enable, b"ENABLE", "ENABLE", false, Local, M::None),
    row(C::Select, b"SELECT", "SELECT", false, Read, M::First),
    row(C::Examine, b"EXAMINE", "EXAMINE", false, Read, M::First),
    row(C::Status, b"STATUS", "STATUS", false, Read, M::First),
    row(C::List, b"LIST", "LIST", false, Read, M::None),
    row(C::Lsub, b"LSUB", "LSUB", false, Read, M::None),
    row(
        C::Namespace,
        b"NAMESPACE",
        "NAMESPACE",
        false,
        Read,
        M::None,
    ),
    row(C::Check, b"CHECK", "CHECK", false, Read, M::None),
    // Read: under read-only the mailbox is open with EXAMINE, so CLOSE expunges nothing;
    // under seen-only the session turns it into UNSELECT.
    row(C::Close, b"CLOSE", "CLOSE", false, Read, M::None),
    row(C::Unselect, b"UNSELECT", "UNSELECT", false, Read, M::None),
    row(C::Fetch, b"FETCH", "FETCH", false, Read, M::None),
    row(C::Search, b"SEARCH", "SEARCH", false, Read, M::None),
    row(C::Idle, b"IDLE", "IDLE", false, Read, M::None),
    row(C::Store, b"STORE", "STORE", false, Flags, M::None),
    row(C::Copy, b"COPY", "COPY", false, Write, M::Second),
    row(C::Move, b"MOVE", "MOVE", false, Write, M::Second),
    row(C::Append, b"APPEND", "APPEND", false, Write, M::First),
    row(C::Expunge, b"EXPUNGE", "EXPUNGE", false, Write, M::None),
    row(C::Create, b"CREATE", "CREATE", false, Write, M::First),
    row(C::Delete, b"DELETE", "DELETE", false, Write, M::First),
    row(C::Rename, b"RENAME", "RENAME", false, Write, M::FirstTwo),
    row(
        C::Subscribe,
        b"SUBSCRIBE",
        "SUBSCRIBE",
        false,
        Write,
        M::First,
    ),
    row(
        C::Unsubscribe,
        b"UNSUBSCRIBE",
        "UNSUBSCRIBE",
        false,
        Write,
        M::First,
    ),
    row(C::SetAcl, b"SETACL", "SETACL", false, Admin, M::None),
    row(
        C::DeleteAcl,
        b"DELETEACL",
        "DELETEACL",
        false,
        Admin,
        M::None,
    ),
    row(C::SetQuota, b"SETQUOTA", "SETQUOTA", false, Admin, M::None),
    row(
        C::SetMetadata,
        b"SETMETADATA",
        "SETMETADATA",
        false,
        Admin,
        M::None,
    ),
    uid(C::UidFetch, b"FETCH", "UID FETCH", Read, M::None),
    uid(C::UidSearch, b"SEARCH", "UID SEARCH", Read, M::None),
    uid(C::UidCopy, b"COPY", "UID COPY", Write, M::Second),
    uid(C::UidMove, b"MOVE", "UID MOVE", Write, M::Second),
    uid(C::UidStore, b"STORE", "UID STORE", Flags, M::None),
    uid(C::UidExpunge, b"EXPUNGE", "UID EXPUNGE", Write, M::None),
];

impl Command {
    /// Looks a command up by its upper-cased name and UID sub-command.
    pub fn parse(name: &[u8], uid_sub: Option<&[u8]>) -> Option<&'static Spec> {
        match (name, uid_sub) {
            (b"UID", Some(sub)) => TABLE.iter().find(|s| s.uid && s.name == sub),
            (b"UID", None) => None,
            (name, _) => TABLE.iter().find(|s| !s.uid && s.name == name),
        }
    }

    pub fn spec(self) -> &'static Spec {
        // TABLE is in declaration order (checked by `every_command_has_exactly_one_row`);
        // the fallback only keeps this total.
        TABLE.get(self as usize).unwrap_or(&TABLE[0])
    }

    pub fn label(self) -> &'static str {
        self.spec().label
    }

    pub fn is_store(self) -> bool {
        matches!(self, Command::Store | Command::UidStore)
    }
}

/// Extensions that ENABLE may switch on upstream. UTF8=ACCEPT is left out on purpose: it
/// changes how mailbox names are spelled, which the mailbox policy depends on.
pub const ENABLEABLE: &[&str] = &["CONDSTORE"];

/// Capabilities before login.
pub const PRE_AUTH_CAPABILITIES: &str = "IMAP4rev1 LITERAL+ SASL-IR ID AUTH=PLAIN";

/// Extensions passed on when upstream has them; the proxy's own LITERAL+ and ID are always on.
const READ_EXTENSIONS: &[&str] = &[
    "IDLE",
    "NAMESPACE",
    "ENABLE",
    "SPECIAL-USE",
    "ESEARCH",
    "CONDSTORE",
    "UNSELECT",
    "CHILDREN",
];
/// Only meaningful when writes are allowed.
const WRITE_EXTENSIONS: &[&str] = &["UIDPLUS", "MOVE"];

/// Capabilities after login: the proxy's own plus what upstream has of the supported set.
/// `writes` is true only for read-write access (UIDPLUS and MOVE are about copies).
pub fn post_auth_capabilities(upstream: &[String], writes: bool) -> String {
    let has = |c: &str| upstream.iter().any(|u| u.eq_ignore_ascii_case(c));
    let mut caps = vec!["IMAP4rev1", "LITERAL+", "ID"];
    caps.extend(READ_EXTENSIONS.iter().copied().filter(|c| has(c)));
    if writes {
        caps.extend(WRITE_EXTENSIONS.iter().copied().filter(|c| has(c)));
    }
    caps.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_hide_what_the_proxy_does_not_support() {
        let upstream: Vec<String> = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT LITERAL+ MOVE UIDPLUS COMPRESS=DEFLATE STARTTLS AUTH=PLAIN AUTH=LOGIN LOGINDISABLED CONDSTORE ESEARCH SPECIAL-USE NAMESPACE"
            .split(' ')
            .map(String::from)
            .collect();
        let ro = post_auth_capabilities(&upstream, false);
        assert_eq!(
            ro,
            "IMAP4rev1 LITERAL+ ID IDLE NAMESPACE ENABLE SPECIAL-USE ESEARCH CONDSTORE"
        );
        let rw = post_auth_capabilities(&upstream, true);
        assert!(rw.ends_with("UIDPLUS MOVE"));
        for banned in ["AUTH=", "STARTTLS", "COMPRESS", "LOGINDISABLED", "SORT"] {
            assert!(!rw.contains(banned), "{banned} in {rw}");
        }
    }

    #[test]
    fn uid_subcommands() {
        assert_eq!(
            Command::parse(b"UID", Some(b"STORE")).map(|c| c.class),
            Some(Class::Flags)
        );
        assert_eq!(Command::parse(b"UID", Some(b"THREAD")), None);
        assert_eq!(Command::parse(b"UID", None), None);
        assert_eq!(Command::parse(b"XYZZY", None), None);
        // A UID sub-command is not a command of its own, nor the other way round.
        assert_eq!(Command::parse(b"UID", Some(b"SELECT")), None);
        assert_eq!(
            Command::parse(b"FETCH", None).map(|c| c.command),
            Some(Command::Fetch)
        );
    }

    #[test]
    fn every_command_has_exactly_one_row() {
        assert_eq!(TABLE.len(), Command::UidExpunge as usize + 1);
        for (i, spec) in TABLE.iter().enumerate() {
            assert_eq!(spec.command as usize, i, "{:?} out of order", spec.command);
            let rows = TABLE.iter().filter(|s| s.command == spec.command).count();
            assert_eq!(rows, 1, "{:?}", spec.command);
            assert_eq!(spec.command.spec(), spec);
            let sub = spec.uid.then_some(spec.name);
            let name: &[u8] = if spec.uid { b"UID" } else { spec.name };
            assert_eq!(Command::parse(name, sub), Some(spec));
        }
        // Only what the proxy answers itself comes before login (NOOP and LOGOUT too).
        for spec in TABLE.iter().filter(|s| s.before_login) {
            assert!(
                matches!(spec.class, Class::Local | Class::Read)
                    && spec.mailboxes == MailboxArgs::None,
                "{:?}",
                spec.command
            );
        }
    }
}
