//! The application-facing wire: command-line framing, the DATA reader, replies.

pub mod data_reader;
pub mod line;
pub mod reply;
