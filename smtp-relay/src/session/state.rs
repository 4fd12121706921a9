//! What a session is in: the AUTH exchange, the open transaction, and what the dispatch
//! tells the connection loop to do next.

use std::sync::Arc;
use std::time::Instant;

use mailcred_core::crd::RateLimits;
use mailcred_core::credential::UsableCredential;

use crate::outcome::{Outcome, Reason};
use crate::policy::CompiledPolicy;
use crate::upstream::RelayAddress;

/// Where the application's AUTH exchange stands.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    None,
    PlainResponse,
    LoginUser,
    LoginPassword,
    Done,
}

impl Auth {
    pub(crate) fn in_progress(self) -> bool {
        !matches!(self, Auth::None | Auth::Done)
    }
}

/// What the connection loop does after a command.
pub(crate) enum Next {
    Continue,
    Data,
    Close,
}

/// How waiting for input ended.
pub(crate) enum Read {
    Bytes,
    Eof,
    Timeout,
    Shutdown,
}

/// A transaction between MAIL and the end of DATA, with its upstream transaction.
pub(crate) struct Transaction<T> {
    pub(crate) credential: Arc<UsableCredential>,
    /// The policy as it was at this MAIL (edits apply from the next MAIL on).
    pub(crate) policy: CompiledPolicy,
    pub(crate) rate_limits: RateLimits,
    /// As the application wrote it (audit).
    pub(crate) sender: String,
    /// Accepted by the policy and by upstream.
    pub(crate) recipients: Vec<RelayAddress>,
    pub(crate) refused: u32,
    /// The last refusal of a recipient (audited if the message never comes).
    pub(crate) last_refusal: Option<(Outcome, Reason)>,
    /// Taken when the message goes upstream or the transaction is aborted.
    pub(crate) upstream: Option<T>,
    pub(crate) started: Instant,
}
