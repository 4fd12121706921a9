//! The authenticated upstream, one transaction at a time: opened at MAIL (a pooled,
//! authenticated connection), each RCPT passed through so the application hears upstream's
//! verdict per recipient, and DATA only once at least one recipient was accepted.

mod address;
mod client;
mod connect;
mod errors;
mod pool;
mod pools;
mod sasl;
mod verify;

use std::future::Future;
use std::sync::Arc;

use mailcred_core::credential::UsableCredential;

pub use address::RelayAddress;
pub use client::UpstreamReply;
/// The DATA reader's tests check that it undoes exactly this stuffing.
#[cfg(test)]
pub(crate) use client::stuffed_chunks;
pub use errors::{Scrubber, UpstreamError};
pub use pool::{SmtpTransaction, SmtpUpstream};
pub use verify::verify_login;

use crate::outcome::{Outcome, Reason};
use crate::wire::reply::Reply;

/// What upstream decided about one step (MAIL, one RCPT, or the message), as the
/// application is to hear it.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The reply for the application (upstream's text scrubbed); only used when refused.
    pub reply: Reply,
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    pub upstream_code: Option<u16>,
}

impl Verdict {
    pub fn accepted(code: u16) -> Self {
        Self {
            reply: Reply::new(250, "2.0.0", "accepted by upstream"),
            outcome: Outcome::Relayed,
            reason: None,
            upstream_code: Some(code),
        }
    }

    pub fn is_accepted(&self) -> bool {
        self.outcome == Outcome::Relayed
    }

    /// A failure of the path (no upstream reply to relay).
    pub fn failed(error: &UpstreamError) -> Self {
        let (reply, outcome, reason) = error.classify();
        Self {
            reply,
            outcome,
            reason: Some(reason),
            upstream_code: error.code(),
        }
    }

    /// Upstream's reply to `what` (sender, recipient, message), relayed when it refuses.
    pub fn from_reply(reply: &UpstreamReply, what: &str, scrubber: &Scrubber) -> Self {
        let text = scrubber.scrub(&reply.text());
        let (relayed, outcome, reason) = match reply.code {
            200..=299 => return Self::accepted(reply.code),
            400..=499 => (
                Reply::new(
                    reply.code,
                    "",
                    format!("upstream deferred the {what}: {text}"),
                ),
                Outcome::TemporaryFailure,
                Reason::UpstreamTransient,
            ),
            500..=599 => (
                Reply::new(
                    reply.code,
                    "",
                    format!("upstream refused the {what}: {text}"),
                ),
                Outcome::UpstreamRejected,
                Reason::UpstreamPermanent,
            ),
            _ => {
                return Self::failed(&UpstreamError::Protocol("unexpected reply code"));
            }
        };
        tracing::info!(code = reply.code, text = %text, what, "upstream refused");
        Self {
            reply: relayed,
            outcome,
            reason: Some(reason),
            upstream_code: Some(reply.code),
        }
    }
}

/// Opens upstream transactions. The trait lets the session be tested without a network.
pub trait Upstream: Send + Sync + 'static {
    type Transaction: Transaction;

    /// Takes a connection for `credential` and sends MAIL FROM. `Err` is what the
    /// application hears for its MAIL command.
    fn begin(
        &self,
        credential: &Arc<UsableCredential>,
        sender: &RelayAddress,
    ) -> impl Future<Output = Result<Self::Transaction, Verdict>> + Send;

    /// Lets go of upstream state whose credential has expired (called periodically).
    fn sweep(&self) {}
}

/// One open upstream transaction.
pub trait Transaction: Send + Sync + 'static {
    /// Sends RCPT TO and returns upstream's verdict on this recipient.
    fn recipient(&mut self, recipient: &RelayAddress) -> impl Future<Output = Verdict> + Send;

    /// Sends the message (content as the DATA reader produced it) and returns upstream's
    /// verdict; only called when at least one recipient was accepted.
    fn data(self, message: &[u8]) -> impl Future<Output = Verdict> + Send;

    /// Ends the transaction without a message (RSET), returning the connection to the pool.
    fn abort(self) -> impl Future<Output = ()> + Send;
}
