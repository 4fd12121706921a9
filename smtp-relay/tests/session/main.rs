//! The relay's application-facing behaviour over real loopback TCP, with the upstream replaced
//! by a recorder (the real-upstream tests are in peers.rs). Each bad-input item of the issue
//! has a test here.

mod auth;
mod harness;
mod policy;
#[path = "../support/mod.rs"]
mod support;
mod wire;
