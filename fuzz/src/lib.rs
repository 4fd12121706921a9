//! The bodies of the fuzz targets, as plain functions: libFuzzer drives them through
//! `fuzz_targets/`, and `tests/corpus_replay.rs` replays the committed corpus on stable Rust
//! in the normal test suite. Each must never panic, whatever the input.

pub mod envelope;
pub mod headers;
pub mod imap;
pub mod mem;
pub mod registration;
pub mod sasl;
pub mod smtp;
