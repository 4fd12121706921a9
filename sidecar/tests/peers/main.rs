//! The sidecar binary against the real peers (postfix submission + dovecot, e2e/peers): the
//! test seals a credential with the local KMS provider (so the real decrypt path runs), starts
//! `mailcred-sidecar --credential-file`, sends as the application with python smtplib, swaks
//! and curl, and reads the result back from the mailbox over IMAP.
//!
//! One test binary (tests run in parallel, as when this was one file), one file per concern:
//! `relay` (delivery over STARTTLS / implicit TLS, swaks and curl), `policy` (refusals),
//! `failures` (upstream rejections and trouble), `lifecycle` (rotation, SIGTERM), `access`
//! (service-account removal), and `support` (setup, the sidecar process, mail helpers).

mod access;
mod failures;
mod lifecycle;
mod policy;
mod relay;
mod support;
