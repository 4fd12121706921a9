//! mailcred's SMTP front-end.
//!
//! An application on the same pod speaks plain ESMTP to a loopback port, without any
//! credential. The relay checks each message against the MailCredential's policy, then hands
//! it to the upstream submission server over verified TLS, authenticated with the decrypted
//! password, and answers the application only with what upstream decided. Nothing is queued.
//!
//! Commands are parsed with Stalwart's `smtp-proto`; line framing, the DATA reader and the
//! policy are our own because they carry the bounds and the smuggling defence.

mod audit;
mod config;
mod data;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod line;
mod metrics;
pub mod policy;
mod reply;
mod server;
mod session;
mod upstream;

pub use config::{MAX_LINE_CEILING, RFC_MAX_LINE, RelayConfig};
pub use data::{DataReader, Fed};
pub use error::Error;
pub use headers::{HeaderSenders, header_senders};
pub use metrics::RelayMetrics;
pub use reply::Reply;
pub use server::SmtpRelay;
pub use upstream::{Deliver, Delivery, LettreUpstream, envelope};
