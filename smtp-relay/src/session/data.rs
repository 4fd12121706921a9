//! DATA: the message is read (bounded by the policy's size and the relay-wide memory
//! budget), checked (NUL, sender headers, rates), and only then handed to the upstream
//! transaction; the application hears upstream's verdict on the message.

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::state::{Next, Read, Transaction};
use crate::outcome::{Outcome, Reason};
use crate::policy::headers::{HeaderSenders, header_senders};
use crate::policy::{Denial, Rule};
use crate::shared::MemoryReservation;
use crate::upstream::{Transaction as _, Upstream};
use crate::wire::data_reader::DataReader;
use crate::wire::reply::Reply;

/// Why a message that was read completely is not relayed.
struct Refusal {
    reply: Reply,
    outcome: Outcome,
    reason: Reason,
}

impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Self {
        let reason = Reason::Policy(denial.rule);
        Self {
            reply: denial.into(),
            outcome: Outcome::PolicyDenied,
            reason,
        }
    }
}

impl<U: Upstream, S: AsyncRead + AsyncWrite + Unpin> Session<'_, U, S> {
    pub(super) fn data_command(&mut self) -> Next {
        let reply = match self.tx.as_ref() {
            None => Reply::new(503, "5.5.1", "need MAIL and RCPT before DATA"),
            Some(tx) if tx.recipients.is_empty() => {
                Reply::new(503, "5.5.1", "need RCPT before DATA (no valid recipients)")
            }
            Some(_) => {
                self.reply(Reply::new(354, "", "end data with <CR><LF>.<CR><LF>"));
                return Next::Data;
            }
        };
        self.error(reply);
        if self.too_many_errors() {
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// Reads the message and answers it. Returns false when the connection must close.
    pub(super) async fn read_data(&mut self) -> std::io::Result<bool> {
        let Some(tx) = self.tx.take() else {
            return Ok(true);
        };
        let limit = usize::try_from(tx.policy.max_message_bytes).unwrap_or(usize::MAX);
        let mut reader = DataReader::new(limit);
        let mut message = Vec::new();
        let mut memory = MemoryReservation::default();
        loop {
            let input = &self.input[self.pos..];
            if !reader.was_shed() && !reader.overflowed() {
                // The budget is charged for the buffer's capacity, grown by a quarter at a time
                // (few copies, little slack). Feeding can at most double the input (a bare CR
                // or LF becomes CRLF); nothing past the policy limit is ever stored.
                let needed = message.len() + 2 * input.len();
                if needed > message.capacity() {
                    let grown = message.capacity() + message.capacity() / 4;
                    let target = needed.max(grown).min(limit.max(message.len()));
                    if memory.ensure(&self.shared.message_memory, target) {
                        message.reserve_exact(target.saturating_sub(message.len()));
                    } else {
                        reader.shed();
                        message = Vec::new();
                        memory = MemoryReservation::default();
                    }
                }
            }
            let fed = reader.feed(input, &mut message);
            self.pos += fed.consumed;
            if fed.done {
                break;
            }
            let reason = match self
                .read_more(self.shared.config.data_timeout, false)
                .await?
            {
                Read::Bytes => continue,
                Read::Eof | Read::Shutdown => Reason::ClientClosed,
                Read::Timeout => {
                    self.reply(Reply::new(
                        421,
                        "4.4.2",
                        "timeout waiting for message data, closing connection",
                    ));
                    Reason::DataTimeout
                }
            };
            // Nothing goes upstream: the message never ended.
            self.count(Outcome::Aborted);
            self.audit_tx(&tx, reader.size(), None, Outcome::Aborted, Some(reason));
            if let Some(upstream) = tx.upstream {
                upstream.abort().await;
            }
            return Ok(false);
        }
        let size = reader.size();
        match self.check_message(&tx, &reader, &message) {
            Some(refusal) => {
                self.count(refusal.outcome);
                self.audit_tx(&tx, size, None, refusal.outcome, Some(refusal.reason));
                self.reply(refusal.reply);
                if let Some(upstream) = tx.upstream {
                    upstream.abort().await;
                }
            }
            None => self.relay(tx, size, &message).await,
        }
        drop(memory);
        Ok(true)
    }

    /// The policy on the complete message: size, NUL, sender headers, then rates (last: a
    /// message the policy refuses anyway takes no token).
    fn check_message(
        &self,
        tx: &Transaction<U::Transaction>,
        reader: &DataReader,
        message: &[u8],
    ) -> Option<Refusal> {
        if reader.overflowed() {
            self.deny(Rule::MaxMessageBytes);
            let detail = format!("message exceeds {} bytes", tx.policy.max_message_bytes);
            return Some(Denial::new(Rule::MaxMessageBytes, detail).into());
        }
        if reader.was_shed() {
            return Some(Refusal {
                reply: Reply::new(
                    452,
                    "4.3.1",
                    "the relay's message memory is exhausted; try again later",
                ),
                outcome: Outcome::TemporaryFailure,
                reason: Reason::MemoryBudget,
            });
        }
        if reader.saw_nul() {
            return Some(Refusal {
                reply: Reply::new(554, "5.6.0", "message contains NUL bytes"),
                outcome: Outcome::InvalidMessage,
                reason: Reason::Nul,
            });
        }
        if let Err(denial) = self.check_headers(tx, message) {
            self.deny(denial.rule);
            return Some(denial.into());
        }
        let rates = self.shared.rate_limiters(&tx.credential, &tx.rate_limits);
        if let Err(rule) = rates.take(tx.recipients.len() as u32) {
            self.deny(rule);
            return Some(Denial::new(rule, "rate exceeded, try again later").into());
        }
        None
    }

    fn check_headers(
        &self,
        tx: &Transaction<U::Transaction>,
        message: &[u8],
    ) -> Result<(), Denial> {
        match header_senders(message) {
            HeaderSenders::Unparsable(field, None) => Err(Denial::new(
                Rule::AllowedSenders,
                format!("the {field} header names no address that can be checked"),
            )),
            HeaderSenders::Unparsable(field, Some(problem)) => Err(Denial::new(
                Rule::AllowedSenders,
                format!("the {field} header cannot be parsed strictly: {problem}"),
            )),
            HeaderSenders::Malformed => Err(Denial::new(
                Rule::AllowedSenders,
                "the header section has a line that is not a header field",
            )),
            HeaderSenders::Addresses(list) => list.iter().try_for_each(|(field, address)| {
                tx.policy.check_sender(address).map_err(|_| {
                    Denial::new(
                        Rule::AllowedSenders,
                        format!("{field} header address <{address}> is not allowed"),
                    )
                })
            }),
        }
    }

    async fn relay(&mut self, mut tx: Transaction<U::Transaction>, size: u64, message: &[u8]) {
        let sent = std::time::Instant::now();
        let Some(upstream) = tx.upstream.take() else {
            return;
        };
        let verdict = upstream.data(message).await;
        self.shared
            .metrics
            .upstream_latency
            .observe(sent.elapsed().as_secs_f64());
        self.count(verdict.outcome);
        self.audit_tx(
            &tx,
            size,
            verdict.upstream_code,
            verdict.outcome,
            verdict.reason,
        );
        let reply = if verdict.is_accepted() {
            Reply::new(250, "2.0.0", "message accepted by upstream")
        } else {
            verdict.reply
        };
        self.reply(reply);
    }
}
