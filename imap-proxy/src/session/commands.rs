//! One application command after login, checked against the policy in force: known to the
//! table, allowed by the access level (read-only, seen-only, read-write), mailbox arguments
//! allowed; then answered locally or forwarded.

use mailcred_core::crd::ImapAccess;

use super::state::{PendingKind, Relay, Session, Step};
use crate::command_table::{Class, Command, Spec};
use crate::error::Error;
use crate::outcome::{Outcome, Reason};
use crate::wire::command::{AppCommand, Read, Refusal, read_command};
use crate::wire::lexer::Item;
use crate::wire::write::reply;

const READ_ONLY_TEXT: &str = "[NOPERM] Read-only access: this credential's policy forbids changes";
const SEEN_ONLY_TEXT: &str =
    "[NOPERM] Seen-only access: this credential's policy allows only setting and clearing \\Seen";

/// The refusal for a command the access level forbids outright (before its arguments).
fn refusal(spec: &Spec, access: ImapAccess) -> Option<Refusal> {
    let refuse = |text: &str, reason| {
        Some(Refusal {
            status: "NO",
            text: text.into(),
            reason,
        })
    };
    match (spec.class, access) {
        (Class::Admin, _) => refuse(
            "[NOPERM] Account administration is not allowed through mailcred",
            Reason::Admin,
        ),
        (Class::Write | Class::Flags, ImapAccess::ReadOnly) => {
            refuse(READ_ONLY_TEXT, Reason::ReadOnly)
        }
        (Class::Write, ImapAccess::SeenOnly) => refuse(SEEN_ONLY_TEXT, Reason::SeenOnly),
        _ => None,
    }
}

/// True for `STORE set [(modifiers)] +FLAGS|-FLAGS[.SILENT] (\Seen)` (list or bare flags):
/// the only change seen-only access permits. The replace form `FLAGS` is refused: it would
/// clear every other flag, and the proxy does not know which are set.
pub(crate) fn only_seen(items: &[Item]) -> bool {
    let mut rest = items.iter().skip(1).peekable();
    if matches!(rest.peek(), Some(Item::List(_))) {
        rest.next(); // CONDSTORE's (UNCHANGEDSINCE n)
    }
    let Some(operation) = rest.next().and_then(Item::astring) else {
        return false;
    };
    let operation = operation.to_ascii_uppercase();
    if !matches!(
        operation.as_slice(),
        b"+FLAGS" | b"-FLAGS" | b"+FLAGS.SILENT" | b"-FLAGS.SILENT"
    ) {
        return false;
    }
    let mut flags = Vec::new();
    for item in rest {
        match item {
            Item::List(inner) => flags.extend(inner.iter()),
            other => flags.push(other),
        }
    }
    !flags.is_empty()
        && flags
            .iter()
            .all(|f| matches!(f, Item::Atom(a) if a.eq_ignore_ascii_case(b"\\Seen")))
}

impl Session<'_> {
    /// Reads and handles one command.
    pub(super) async fn command(&mut self, r: &mut Relay) -> Result<Step, Error> {
        let limits = self.limits();
        let first = self
            .app
            .read_line(limits.max_line, limits.io_timeout, "reading a command")
            .await?;
        let access = r.policy.access;
        let mut refused_label = "";
        let read = read_command(&mut self.app, first, &limits, |name, uid_sub| {
            let Some(spec) = Command::parse(name, uid_sub) else {
                return Some(Refusal {
                    status: "BAD",
                    text: "Unknown or unsupported command".into(),
                    reason: Reason::UnknownCommand,
                });
            };
            refused_label = spec.label;
            refusal(spec, access)
        })
        .await?;
        match read {
            Read::Rejected(reason) => {
                self.deny(refused_label, reason, None);
                Ok(Step::Continue)
            }
            Read::Close(reason) => {
                self.deny(refused_label, reason, None);
                Ok(Step::Close(Outcome::ClosedByProxy))
            }
            Read::Command(cmd) => self.dispatch(r, cmd).await,
            Read::AppendMessage(cmd, marker) => self.append(r, cmd, marker).await,
        }
    }

    async fn dispatch(&mut self, r: &mut Relay, mut cmd: AppCommand) -> Result<Step, Error> {
        let Some(spec) = Command::parse(&cmd.name, cmd.uid_sub.as_deref()) else {
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
        if spec.class == Class::Local {
            return self.answer_locally(r, spec.command, cmd).await;
        }
        let access = r.policy.access;
        if access == ImapAccess::SeenOnly && spec.command.is_store() && !only_seen(&cmd.items) {
            self.deny(spec.label, Reason::SeenOnly, None);
            reply(&mut self.app, &cmd.tag, "NO", SEEN_ONLY_TEXT).await?;
            return Ok(Step::Continue);
        }
        let Some(opened) = self.check_mailboxes(r, &cmd, spec).await? else {
            return Ok(Step::Continue);
        };
        let kind = match spec.command {
            Command::Select | Command::Examine => PendingKind::Open {
                mailbox: opened.unwrap_or_default(),
                writable: spec.command == Command::Select && access != ImapAccess::ReadOnly,
            },
            Command::Close | Command::Unselect => PendingKind::Deselect,
            Command::Idle => PendingKind::Idle { reject: false },
            Command::Logout => PendingKind::Logout,
            _ => PendingKind::Plain,
        };
        if spec.command == Command::Select && access == ImapAccess::ReadOnly {
            // The application keeps its SELECT semantics minus writes; the tagged OK it gets
            // carries [READ-ONLY] from upstream, as RFC 3501 allows for SELECT.
            rename(&mut cmd, b"EXAMINE");
        }
        if spec.command == Command::Close && access == ImapAccess::SeenOnly {
            // CLOSE expunges \Deleted messages of a writable mailbox; UNSELECT does not.
            if !r.upstream_has("UNSELECT") {
                self.deny(spec.label, Reason::SeenOnly, None);
                let text = "[NOPERM] Seen-only access: CLOSE would expunge and this server has no UNSELECT; select another mailbox or log out";
                reply(&mut self.app, &cmd.tag, "NO", text).await?;
                return Ok(Step::Continue);
            }
            rename(&mut cmd, b"UNSELECT");
        }
        self.forward(r, &cmd, kind).await
    }
}

/// Replaces the command name in the command's first segment.
fn rename(cmd: &mut AppCommand, name: &[u8]) {
    let span = cmd.name_span.clone();
    if let Some(first) = cmd.segments.first_mut() {
        first.text.splice(span.clone(), name.iter().copied());
        cmd.name_span = span.start..span.start + name.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::lexer::Lexer;
    use proptest::prelude::*;

    fn items(text: &str) -> Vec<Item> {
        let mut lexer = Lexer::new();
        lexer.feed_line(text.as_bytes()).unwrap();
        lexer.finish().unwrap()
    }

    #[test]
    fn seen_only_store_forms() {
        for allowed in [
            "1:* +FLAGS (\\Seen)",
            "1 -FLAGS.SILENT (\\seen)",
            "2,4 +FLAGS \\Seen",
            "1 (UNCHANGEDSINCE 12) +FLAGS.SILENT (\\Seen)",
        ] {
            assert!(only_seen(&items(allowed)), "{allowed}");
        }
        for refused in [
            "1 +FLAGS (\\Deleted)",
            "1 +FLAGS (\\Seen \\Deleted)",
            "1 FLAGS (\\Seen)",
            "1 FLAGS.SILENT (\\Seen)",
            "1 +FLAGS ()",
            "1 +FLAGS",
            "1 +FLAGS (\\Seen $Junk)",
            "1 +FLAGS (\"Seen\")",
            "1 +X-GM-LABELS (\\Seen)",
            "",
        ] {
            assert!(!only_seen(&items(refused)), "{refused}");
        }
    }

    proptest! {
        /// Whatever the arguments, a STORE passes seen-only only if every flag it names is
        /// \Seen and it adds or removes (never replaces).
        #[test]
        fn seen_only_never_passes_another_flag(
            op in prop_oneof![Just("+FLAGS"), Just("-FLAGS"), Just("FLAGS"), Just("+FLAGS.SILENT"), Just("X")],
            flags in proptest::collection::vec(prop_oneof![Just("\\Seen"), Just("\\SEEN"), Just("\\Deleted"), Just("\\Flagged"), Just("$Forwarded"), Just("Seen")], 0..4),
            parens in any::<bool>(),
        ) {
            let list = flags.join(" ");
            let text = if parens { format!("1:5 {op} ({list})") } else { format!("1:5 {op} {list}") };
            let passes = only_seen(&items(&text));
            let expected = op.starts_with(['+', '-'])
                && !flags.is_empty()
                && flags.iter().all(|f| f.eq_ignore_ascii_case("\\Seen"));
            prop_assert_eq!(passes, expected, "{}", text);
        }
    }
}
