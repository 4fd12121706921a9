//! mailcred's SMTP front-end.
//!
//! An application on the same pod speaks plain ESMTP to a loopback port, without any
//! credential. The relay checks each step against the MailCredential's policy, passes it to
//! the upstream submission server over verified TLS, authenticated with the decrypted
//! password, and answers the application only with what upstream decided. Nothing is queued.
//!
//! Commands are parsed with Stalwart's `smtp-proto`; line framing, the DATA reader, the
//! header check and the upstream client are our own because they carry the bounds, the
//! smuggling defence and the scrubbing of upstream text.

mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
mod outcome;
pub mod policy;
mod server;
mod session;
mod shared;
#[doc(hidden)]
pub mod testkit;
mod upstream;
mod wire;

pub use config::{MAX_LINE_CEILING, RFC_MAX_LINE, RelayConfig};
pub use error::Error;
pub use metrics::RelayMetrics;
pub use outcome::{AccountAuth, Outcome, Reason};
pub use policy::headers::{HeaderSenders, SenderField, header_senders};
pub use server::SmtpRelay;
pub use upstream::{
    RelayAddress, Scrubber, SmtpTransaction, SmtpUpstream, Transaction, Upstream, UpstreamError,
    Verdict,
};
pub use wire::data_reader::{DataReader, Fed};
pub use wire::reply::Reply;
