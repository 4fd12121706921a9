//! IMAP on the wire: buffered connections, the tokenizer, and command reading.

pub mod command;
pub mod conn;
pub mod lexer;
pub mod stream;
