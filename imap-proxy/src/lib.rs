//! The sidecar's IMAP front-end. Applications connect to a loopback port and log in with
//! anything (or a local token); the proxy logs in upstream over verified TLS with the sealed
//! credential and relays the session through a streaming filter that enforces the
//! credential's IMAP policy: read-only, allowed mailboxes, allow-listed commands.
//!
//! ```no_run
//! # async fn run(source: std::sync::Arc<dyn mailcred_core::credential::CredentialSource>) -> Result<(), mailcred_imap::Error> {
//! let mut registry = prometheus_client::registry::Registry::default();
//! let metrics = mailcred_imap::ImapMetrics::register(&mut registry);
//! let proxy = mailcred_imap::ImapProxy::new(Default::default(), source, metrics);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:1143").await.unwrap();
//! proxy.serve(listener, mailcred_imap::CancellationToken::new()).await
//! # }
//! ```

mod audit;
pub mod command_table;
mod config;
mod context;
mod error;
pub mod mailbox;
mod metrics;
pub mod outcome;
mod proxy;
pub mod scrub;
mod session;
mod upstream;
pub mod wire;

pub use command_table::{PRE_AUTH_CAPABILITIES, post_auth_capabilities};
pub use config::ImapProxyConfig;
pub use error::{Error, LoginRefusal, Side};
pub use metrics::ImapMetrics;
pub use proxy::ImapProxy;
pub use tokio_util::sync::CancellationToken;
pub use upstream::verify_login;
