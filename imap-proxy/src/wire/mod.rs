//! IMAP on the wire: buffered connections, the tokenizer, command reading, response text and
//! mailbox-name spelling. Nothing here knows the policy.

pub mod command;
pub mod conn;
pub mod lexer;
pub mod mutf7;
pub mod response;
pub mod skip;
pub mod stream;
pub mod write;
