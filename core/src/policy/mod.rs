//! The policy rules that must read the same everywhere: the operator's validation, the
//! plugin's pre-prompt checks, the SMTP relay and the IMAP proxy parse patterns here and
//! nowhere else.

pub mod address;
pub mod mailbox;
mod pattern_list;

pub use address::{Address, AddressError, AddressPattern, AddressPatterns, AddressRole};
pub use mailbox::{MailboxPattern, MailboxPatternError, MailboxPatterns};
pub use pattern_list::ListEntryError;
pub(crate) use pattern_list::parse_list;
