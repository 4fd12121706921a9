//! What both pattern lists (addresses, mailboxes) share: parsing every entry or naming the bad one.

use std::fmt;

/// A pattern list entry that does not parse, with its position for the error message
/// (`allowedSenders[2]`, say): a list with one bad entry is refused whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntryError<E> {
    pub index: usize,
    pub entry: String,
    pub error: E,
}

impl<E: fmt::Display> fmt::Display for ListEntryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {:?}: {}", self.index, self.entry, self.error)
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for ListEntryError<E> {}

/// Parses every entry with `parse`, or names the first that does not parse.
pub(crate) fn parse_list<S: AsRef<str>, T, E>(
    entries: &[S],
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Vec<T>, ListEntryError<E>> {
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            parse(entry.as_ref()).map_err(|error| ListEntryError {
                index,
                entry: entry.as_ref().to_owned(),
                error,
            })
        })
        .collect()
}
