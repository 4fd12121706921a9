//! Test seams shared by this crate's tests and the fuzz harness: an upstream that accepts
//! everything and records what it was handed. Not part of the supported API.

use std::sync::{Arc, Mutex};

use mailcred_core::credential::UsableCredential;

use crate::upstream::{RelayAddress, Transaction, Upstream, Verdict};

/// What reached "upstream": one message.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The id of the credential the message went out with (account-set tests).
    pub credential: String,
    pub from: String,
    pub to: Vec<String>,
    pub message: Vec<u8>,
}

/// Accepts every sender, recipient and message, and records the messages.
#[derive(Clone, Default)]
pub struct RecordingUpstream {
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl RecordingUpstream {
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// One recorded transaction in progress.
pub struct RecordingTransaction {
    sent: Arc<Mutex<Vec<Sent>>>,
    credential: String,
    from: String,
    to: Vec<String>,
}

impl Upstream for RecordingUpstream {
    type Transaction = RecordingTransaction;

    async fn begin(
        &self,
        credential: &Arc<UsableCredential>,
        sender: &RelayAddress,
    ) -> Result<RecordingTransaction, Verdict> {
        Ok(RecordingTransaction {
            sent: self.sent.clone(),
            credential: credential.id(),
            from: sender.to_string(),
            to: Vec::new(),
        })
    }
}

impl Transaction for RecordingTransaction {
    async fn recipient(&mut self, recipient: &RelayAddress) -> Verdict {
        self.to.push(recipient.to_string());
        Verdict::accepted(250)
    }

    async fn data(self, message: &[u8]) -> Verdict {
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(Sent {
                credential: self.credential,
                from: self.from,
                to: self.to,
                message: message.to_vec(),
            });
        }
        Verdict::accepted(250)
    }

    async fn abort(self) {}
}
