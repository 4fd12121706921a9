//! Mailboxes and the policy: mailbox arguments of commands are checked before they go
//! upstream; LIST, LSUB and STATUS responses reach the application only for allowed
//! mailboxes, and LIST says `\HasChildren` only when the policy could allow a child.

use super::state::{Relay, Session};
use crate::command_table::Spec;
use crate::error::Error;
use crate::mailbox::NameError;
use crate::outcome::Reason;
use crate::wire::command::AppCommand;
use crate::wire::lexer::Item;
use crate::wire::response::hide_children;
use crate::wire::write::reply;

/// Which untagged response names a mailbox, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MailboxResponse {
    /// `* LIST (flags) delimiter name` (and LSUB): name at 3, flags at 1, delimiter at 2.
    Listing,
    /// `* STATUS name (items)`.
    Status,
}

impl Session<'_> {
    /// Checks the mailbox arguments of `cmd`. `Ok(None)` when refused (already answered);
    /// otherwise the first mailbox, decoded.
    pub(super) async fn check_mailboxes(
        &mut self,
        r: &mut Relay,
        cmd: &AppCommand,
        spec: &Spec,
    ) -> Result<Option<Option<String>>, Error> {
        let mut first = None;
        for &i in spec.mailboxes.positions() {
            let Some(name) = cmd.items.get(i).and_then(Item::astring) else {
                reply(&mut self.app, &cmd.tag, "BAD", "Missing mailbox name").await?;
                self.deny(spec.label, Reason::Syntax, None);
                return Ok(None);
            };
            match r.policy.patterns.check_wire(name) {
                Ok(Some(decoded)) => {
                    first.get_or_insert(decoded);
                }
                Ok(None) => {
                    let shown = String::from_utf8_lossy(name).into_owned();
                    self.deny(spec.label, Reason::Mailbox, Some(&shown));
                    reply(
                        &mut self.app,
                        &cmd.tag,
                        "NO",
                        "[NOPERM] Mailbox not allowed by this credential's policy",
                    )
                    .await?;
                    return Ok(None);
                }
                Err(NameError::Invalid) => {
                    self.deny(spec.label, Reason::MailboxNameInvalid, None);
                    reply(
                        &mut self.app,
                        &cmd.tag,
                        "BAD",
                        "Invalid mailbox name (modified UTF-7 expected)",
                    )
                    .await?;
                    return Ok(None);
                }
            }
        }
        Ok(Some(first))
    }

    /// LIST / LSUB / STATUS: forwarded only when the mailbox is allowed; a listed mailbox
    /// whose children the policy hides all is shown as `\HasNoChildren`.
    pub(super) async fn filtered(
        &mut self,
        r: &mut Relay,
        kind: MailboxResponse,
    ) -> Result<(), Error> {
        let (mut raw, items) = self.read_unit(r).await?;
        let name_index = match kind {
            MailboxResponse::Listing => 3,
            MailboxResponse::Status => 1,
        };
        let Some(items) = items else {
            return Ok(());
        };
        let Some(name) = items.get(name_index).and_then(Item::astring) else {
            return Ok(());
        };
        if !r.policy.patterns.allows_wire_lenient(name) {
            return Ok(());
        }
        if kind == MailboxResponse::Listing && !children_visible(r, &items, name) {
            hide_children(&mut raw);
        }
        self.app.write(&raw).await
    }
}

/// Could the application see a child of this listed mailbox? With no hierarchy delimiter
/// (NIL) there are no children.
fn children_visible(r: &Relay, items: &[Item], name: &[u8]) -> bool {
    let delimiter = match items.get(2) {
        Some(Item::Str(d)) | Some(Item::Atom(d)) if d.len() == 1 => d[0],
        _ => return false,
    };
    r.policy.patterns.may_allow_children(name, delimiter)
}
