//! The command allow-list: which commands the proxy answers itself, forwards, refuses as
//! writes under read-only, or does not know (BAD). Also the capabilities it advertises,
//! which must say exactly what this table lets through.

/// How the proxy treats a command once the application is logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Answered by the proxy (CAPABILITY, ID, LOGIN again...).
    Local,
    /// Forwarded as is (after the mailbox check).
    Read,
    /// Forwarded only when the policy is not read-only.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// Metric and audit label (upper case, `UID FETCH` style).
    pub label: &'static str,
    pub class: Class,
    pub mailboxes: MailboxArgs,
}

const fn cmd(label: &'static str, class: Class, mailboxes: MailboxArgs) -> Command {
    Command {
        label,
        class,
        mailboxes,
    }
}

/// Commands after login. `name` and `uid_sub` are upper-cased by the caller.
pub fn lookup(name: &[u8], uid_sub: Option<&[u8]>) -> Option<Command> {
    use Class::*;
    use MailboxArgs as M;
    if name == b"UID" {
        return Some(match uid_sub? {
            b"FETCH" => cmd("UID FETCH", Read, M::None),
            b"SEARCH" => cmd("UID SEARCH", Read, M::None),
            b"COPY" => cmd("UID COPY", Write, M::Second),
            b"MOVE" => cmd("UID MOVE", Write, M::Second),
            b"STORE" => cmd("UID STORE", Write, M::None),
            b"EXPUNGE" => cmd("UID EXPUNGE", Write, M::None),
            _ => return None,
        });
    }
    Some(match name {
        b"CAPABILITY" => cmd("CAPABILITY", Local, M::None),
        b"ID" => cmd("ID", Local, M::None),
        b"LOGIN" => cmd("LOGIN", Local, M::None),
        b"AUTHENTICATE" => cmd("AUTHENTICATE", Local, M::None),
        b"STARTTLS" => cmd("STARTTLS", Local, M::None),
        b"ENABLE" => cmd("ENABLE", Local, M::None),
        b"NOOP" => cmd("NOOP", Read, M::None),
        b"LOGOUT" => cmd("LOGOUT", Read, M::None),
        b"SELECT" => cmd("SELECT", Read, M::First),
        b"EXAMINE" => cmd("EXAMINE", Read, M::First),
        b"STATUS" => cmd("STATUS", Read, M::First),
        b"LIST" => cmd("LIST", Read, M::None),
        b"LSUB" => cmd("LSUB", Read, M::None),
        b"NAMESPACE" => cmd("NAMESPACE", Read, M::None),
        b"CHECK" => cmd("CHECK", Read, M::None),
        b"CLOSE" => cmd("CLOSE", Read, M::None),
        b"UNSELECT" => cmd("UNSELECT", Read, M::None),
        b"FETCH" => cmd("FETCH", Read, M::None),
        b"SEARCH" => cmd("SEARCH", Read, M::None),
        b"IDLE" => cmd("IDLE", Read, M::None),
        b"STORE" => cmd("STORE", Write, M::None),
        b"COPY" => cmd("COPY", Write, M::Second),
        b"MOVE" => cmd("MOVE", Write, M::Second),
        b"APPEND" => cmd("APPEND", Write, M::First),
        b"EXPUNGE" => cmd("EXPUNGE", Write, M::None),
        b"CREATE" => cmd("CREATE", Write, M::First),
        b"DELETE" => cmd("DELETE", Write, M::First),
        b"RENAME" => cmd("RENAME", Write, M::FirstTwo),
        b"SUBSCRIBE" => cmd("SUBSCRIBE", Write, M::First),
        b"UNSUBSCRIBE" => cmd("UNSUBSCRIBE", Write, M::First),
        b"SETACL" => cmd("SETACL", Admin, M::None),
        b"DELETEACL" => cmd("DELETEACL", Admin, M::None),
        b"SETQUOTA" => cmd("SETQUOTA", Admin, M::None),
        b"SETMETADATA" => cmd("SETMETADATA", Admin, M::None),
        _ => return None,
    })
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
pub fn post_auth_capabilities(upstream: &[String], read_only: bool) -> String {
    let has = |c: &str| upstream.iter().any(|u| u.eq_ignore_ascii_case(c));
    let mut caps = vec!["IMAP4rev1", "LITERAL+", "ID"];
    caps.extend(READ_EXTENSIONS.iter().copied().filter(|c| has(c)));
    if !read_only {
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
        let ro = post_auth_capabilities(&upstream, true);
        assert_eq!(
            ro,
            "IMAP4rev1 LITERAL+ ID IDLE NAMESPACE ENABLE SPECIAL-USE ESEARCH CONDSTORE"
        );
        let rw = post_auth_capabilities(&upstream, false);
        assert!(rw.ends_with("UIDPLUS MOVE"));
        for banned in ["AUTH=", "STARTTLS", "COMPRESS", "LOGINDISABLED", "SORT"] {
            assert!(!rw.contains(banned), "{banned} in {rw}");
        }
    }

    #[test]
    fn uid_subcommands() {
        assert_eq!(
            lookup(b"UID", Some(b"STORE")).map(|c| c.class),
            Some(Class::Write)
        );
        assert_eq!(lookup(b"UID", Some(b"THREAD")), None);
        assert_eq!(lookup(b"UID", None), None);
        assert_eq!(lookup(b"XYZZY", None), None);
    }
}
