//! The proxy against real dovecot (e2e/peers), driven by real clients (python imaplib, curl)
//! as the application. Each test seals its credential with the local KMS provider; the proxy
//! opens it, logs in to dovecot over verified TLS and enforces the policy.

#[path = "../common/mod.rs"]
mod common;
mod failures;
mod read_only;
mod support;
mod writes;
