//! One application connection: the ESMTP state machine (RFC 5321, with PIPELINING, SIZE,
//! 8BITMIME, ENHANCEDSTATUSCODES), policy checks at each step, and the synchronous hand-off to
//! upstream at the end of DATA. The application hears 250 only after upstream said 250.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mailcred_core::credential::UsableCredential;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::audit::AuditRecord;
use crate::data::DataReader;
use crate::headers::{HeaderSenders, header_senders};
use crate::line::{Line, LineFramer};
use crate::metrics::{OutcomeLabel, RuleLabel};
use crate::policy::{CompiledPolicy, Rule, normalize};
use crate::reply::Reply;
use crate::server::Shared;
use crate::upstream::{Deliver, envelope, relay_address};

const READ_CHUNK: usize = 16 * 1024;
/// Replies buffered before they are written even if more pipelined commands wait.
const MAX_PENDING_OUTPUT: usize = 64 * 1024;
/// Protocol errors tolerated on one connection before it is closed.
const MAX_ERRORS: u32 = 100;

/// A transaction between MAIL and the end of DATA.
struct Transaction {
    credential: Arc<UsableCredential>,
    policy: CompiledPolicy,
    sender: String,
    recipients: Vec<String>,
    refused: u32,
    /// The last policy rule that refused a recipient (audited if the message never comes).
    last_refusal: Option<&'static str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    PlainResponse,
    LoginUser,
    LoginPassword,
    Done,
}

enum Next {
    Continue,
    Data,
    Close,
}

enum Read {
    Bytes,
    Eof,
    Timeout,
    Shutdown,
}

pub(crate) struct Session<'a, D, S> {
    shared: &'a Shared<D>,
    io: S,
    input: Vec<u8>,
    pos: usize,
    out: Vec<u8>,
    framer: LineFramer,
    greeted: bool,
    auth: Auth,
    tx: Option<Transaction>,
    errors: u32,
    shutdown: CancellationToken,
}

impl<'a, D: Deliver, S: AsyncRead + AsyncWrite + Unpin> Session<'a, D, S> {
    pub(crate) fn new(shared: &'a Shared<D>, io: S, shutdown: CancellationToken) -> Self {
        Self {
            framer: LineFramer::new(shared.config.effective_max_line()),
            shared,
            io,
            input: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            out: Vec::with_capacity(1024),
            greeted: false,
            auth: Auth::None,
            tx: None,
            errors: 0,
            shutdown,
        }
    }

    /// Serves the connection until QUIT, EOF, a timeout or shutdown. I/O errors end it quietly:
    /// the application went away.
    pub(crate) async fn run(mut self) {
        let greeting = Reply::new(
            220,
            "",
            format!("{} ESMTP mailcred relay ready", self.shared.config.hostname),
        );
        self.reply(greeting);
        if self.flush().await.is_err() {
            return;
        }
        let _ = self.serve().await;
        self.abandon();
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        loop {
            let (line, drop) = self.framer.next(&self.input[self.pos..]);
            match line {
                Line::Complete(n) => {
                    let line = self.input[self.pos..self.pos + n].to_vec();
                    self.pos += n;
                    match self.handle_line(&line).await {
                        Next::Continue => {}
                        Next::Close => return Ok(()),
                        Next::Data => {
                            self.flush().await?;
                            if !self.read_data().await? {
                                return Ok(());
                            }
                        }
                    }
                    if self.out.len() >= MAX_PENDING_OUTPUT {
                        self.flush().await?;
                    }
                }
                Line::TooLong { consumed } => {
                    self.pos += consumed;
                    let max = self.framer.max_line();
                    self.error(Reply::new(
                        500,
                        "5.5.2",
                        format!("line too long (limit {max} octets)"),
                    ));
                    if self.too_many_errors() {
                        return Ok(());
                    }
                }
                Line::Incomplete => {
                    self.pos += drop;
                    self.flush().await?;
                    let timeout = self.shared.config.command_timeout;
                    // Between transactions a shutdown closes the connection; inside one the
                    // message is in flight and may finish.
                    let interruptible = self.tx.is_none();
                    match self.read_more(timeout, interruptible).await? {
                        Read::Bytes => {}
                        Read::Eof => return Ok(()),
                        Read::Timeout => {
                            self.reply(Reply::new(
                                421,
                                "4.4.2",
                                "idle timeout, closing connection",
                            ));
                            return Ok(());
                        }
                        Read::Shutdown => {
                            self.reply(Reply::new(
                                421,
                                "4.3.2",
                                "sidecar shutting down, try again",
                            ));
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    async fn read_more(&mut self, timeout: Duration, interruptible: bool) -> std::io::Result<Read> {
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.reserve(READ_CHUNK);
        let shutdown = self.shutdown.clone();
        let read = tokio::time::timeout(timeout, self.io.read_buf(&mut self.input));
        let result = if interruptible {
            tokio::select! {
                r = read => r,
                _ = shutdown.cancelled() => return Ok(Read::Shutdown),
            }
        } else {
            read.await
        };
        match result {
            Err(_) => Ok(Read::Timeout),
            Ok(Ok(0)) => Ok(Read::Eof),
            Ok(Ok(_)) => Ok(Read::Bytes),
            Ok(Err(e)) => Err(e),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.io.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
    }

    fn error(&mut self, reply: Reply) {
        self.errors += 1;
        self.reply(reply);
    }

    fn too_many_errors(&mut self) -> bool {
        if self.errors >= MAX_ERRORS {
            self.reply(Reply::new(
                421,
                "4.7.0",
                "too many errors, closing connection",
            ));
            return true;
        }
        false
    }

    async fn handle_line(&mut self, line: &[u8]) -> Next {
        if self.auth != Auth::None && self.auth != Auth::Done {
            self.auth_continue(line);
            return Next::Continue;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            self.error(Reply::new(500, "5.5.2", "command is not valid UTF-8"));
            return if self.too_many_errors() {
                Next::Close
            } else {
                Next::Continue
            };
        };
        if text.contains('\0') {
            self.error(Reply::new(500, "5.5.2", "command contains NUL"));
            return if self.too_many_errors() {
                Next::Close
            } else {
                Next::Continue
            };
        }
        let mut iter = line.iter();
        let request = match Request::parse(&mut iter) {
            Ok(r) => r,
            Err(e) => {
                self.error(parse_error_reply(e));
                return if self.too_many_errors() {
                    Next::Close
                } else {
                    Next::Continue
                };
            }
        };
        match request {
            Request::Ehlo { host } => {
                self.abandon();
                self.greeted = true;
                let size = self.advertised_size().await;
                let name = self.shared.config.hostname.clone();
                self.reply(Reply::multi(
                    250,
                    vec![
                        format!("{name} greets {host}"),
                        "PIPELINING".into(),
                        format!("SIZE {size}"),
                        "8BITMIME".into(),
                        "ENHANCEDSTATUSCODES".into(),
                        "AUTH PLAIN LOGIN".into(),
                        "HELP".into(),
                    ],
                ));
            }
            Request::Helo { .. } => {
                self.abandon();
                self.greeted = true;
                let name = self.shared.config.hostname.clone();
                self.reply(Reply::new(250, "", name));
            }
            Request::Mail { from } => {
                let reply = self.mail(&from.address, from.size, from.flags).await;
                if reply.is_positive() {
                    self.reply(reply);
                } else {
                    self.error(reply);
                }
            }
            Request::Rcpt { to } => {
                let reply = self.rcpt(&to.address);
                if reply.is_positive() {
                    self.reply(reply);
                } else {
                    self.error(reply);
                }
            }
            Request::Data => return self.data_command(),
            Request::Rset => {
                self.abandon();
                self.reply(Reply::new(250, "2.0.0", "reset"));
            }
            Request::Noop { .. } => self.reply(Reply::new(250, "2.0.0", "ok")),
            Request::Quit => {
                self.abandon();
                self.reply(Reply::new(221, "2.0.0", "bye"));
                return Next::Close;
            }
            Request::Help { .. } => self.reply(Reply::new(
                214,
                "2.0.0",
                "commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY AUTH",
            )),
            Request::Vrfy { .. } => self.reply(Reply::new(
                252,
                "2.5.2",
                "cannot verify the user, but will accept the message and attempt delivery",
            )),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth_start(mechanism, &initial_response),
            Request::StartTls => self.error(Reply::new(
                502,
                "5.5.1",
                "STARTTLS is not offered: this listener is loopback only",
            )),
            Request::Bdat { .. } => self.error(Reply::new(502, "5.5.1", "CHUNKING is not offered")),
            _ => self.error(Reply::new(502, "5.5.1", "command not implemented")),
        }
        if self.too_many_errors() {
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// The SIZE to advertise: the policy's limit, read from the loaded resource without
    /// decrypting (the sidecar's source), so that EHLO never waits for KMS. A source without
    /// an outline is asked for the credential once.
    async fn advertised_size(&self) -> u64 {
        if let Some(outline) = self.shared.source.outline() {
            return outline.policy.smtp.max_message_bytes;
        }
        let known = self.shared.advertised_size();
        if known != 0 {
            return known;
        }
        match self.credential().await {
            Ok(c) => {
                self.shared
                    .set_advertised_size(c.policy.smtp.max_message_bytes);
                c.policy.smtp.max_message_bytes
            }
            Err(_) => mailcred_core::crd::SmtpPolicy::default().max_message_bytes,
        }
    }

    /// The decrypted credential, or the reply to give and the reason (a metric label) to audit.
    async fn credential(&self) -> Result<Arc<UsableCredential>, (Reply, &'static str)> {
        let fetch = self.shared.source.credential();
        match tokio::time::timeout(self.shared.config.credential_timeout, fetch).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                let label = e.metric_label();
                tracing::warn!(error = %e, label, "credential unavailable");
                let reply = Reply::new(
                    454,
                    "4.7.0",
                    format!("credential unavailable ({label}); try again later"),
                );
                Err((reply, label))
            }
            Err(_) => {
                tracing::warn!("credential source did not answer in time");
                let reply = Reply::new(
                    451,
                    "4.4.3",
                    "credential unavailable (timeout); try again later",
                );
                Err((reply, "credential_timeout"))
            }
        }
    }

    async fn mail(&mut self, address: &str, size: usize, flags: u64) -> Reply {
        if !self.greeted {
            return Reply::new(503, "5.5.1", "send EHLO or HELO first");
        }
        if self.tx.is_some() {
            return Reply::new(503, "5.5.1", "nested MAIL command; send RSET first");
        }
        if self.shared.config.local_token.is_some() && self.auth != Auth::Done {
            return Reply::new(530, "5.7.0", "authentication required");
        }
        if flags & MAIL_BODY_BINARYMIME != 0 {
            return Reply::new(555, "5.5.4", "BODY=BINARYMIME is not supported");
        }
        if flags & MAIL_SMTPUTF8 != 0 {
            return Reply::new(555, "5.5.4", "SMTPUTF8 is not offered");
        }
        let started = Instant::now();
        let credential = match self.credential().await {
            Ok(c) => c,
            Err((reply, reason)) => {
                self.count("temporary_failure");
                self.audit_refusal(address, 0, 0, "temporary_failure", Some(reason), started);
                return reply;
            }
        };
        let smtp = &credential.policy.smtp;
        self.shared.set_advertised_size(smtp.max_message_bytes);
        let policy = CompiledPolicy::new(smtp, &credential.username);
        let id = credential.id();
        let refusal = if !policy.enabled {
            Some((
                Rule::SendDisabled,
                Rule::SendDisabled.reply("sending is disabled for this credential"),
            ))
        } else if size as u64 > policy.max_message_bytes {
            Some((
                Rule::MaxMessageBytes,
                Rule::MaxMessageBytes.reply(&format!(
                    "declared size {size} exceeds {} bytes",
                    policy.max_message_bytes
                )),
            ))
        } else if address.is_empty() {
            Some((
                Rule::AllowedSenders,
                Rule::AllowedSenders.reply("the null sender <> is not allowed"),
            ))
        } else if normalize(address).is_none() || !is_relayable(address) {
            return Reply::new(501, "5.1.7", "invalid sender address");
        } else {
            policy
                .check_sender(address)
                .err()
                .map(|r| (Rule::AllowedSenders, r))
        };
        if let Some((rule, reply)) = refusal {
            self.deny(rule);
            self.audit_line(
                &id,
                address,
                0,
                0,
                0,
                None,
                started.elapsed(),
                "policy_denied",
                Some(rule.as_str()),
            );
            return reply;
        }
        self.tx = Some(Transaction {
            credential,
            policy,
            sender: address.to_string(),
            recipients: Vec::new(),
            refused: 0,
            last_refusal: None,
        });
        Reply::new(250, "2.1.0", "sender ok")
    }

    fn rcpt(&mut self, address: &str) -> Reply {
        let Some(tx) = self.tx.as_mut() else {
            return Reply::new(503, "5.5.1", "need MAIL before RCPT");
        };
        if normalize(address).is_none() || !is_relayable(address) {
            tx.refused += 1;
            return Reply::new(501, "5.1.3", "invalid recipient address");
        }
        let max = tx.policy.max_recipients as usize;
        let refusal = if tx.recipients.len() >= max {
            Some((
                Rule::MaxRecipients,
                Rule::MaxRecipients.reply(&format!("at most {max} recipients per message")),
            ))
        } else {
            tx.policy
                .check_recipient(address)
                .err()
                .map(|r| (Rule::AllowedRecipients, r))
        };
        if let Some((rule, reply)) = refusal {
            tx.refused += 1;
            tx.last_refusal = Some(rule.as_str());
            self.deny(rule);
            return reply;
        }
        tx.recipients.push(address.to_string());
        Reply::new(250, "2.1.5", "recipient ok")
    }

    fn data_command(&mut self) -> Next {
        let Some(tx) = self.tx.as_ref() else {
            self.error(Reply::new(503, "5.5.1", "need MAIL and RCPT before DATA"));
            return if self.too_many_errors() {
                Next::Close
            } else {
                Next::Continue
            };
        };
        if tx.recipients.is_empty() {
            self.error(Reply::new(
                503,
                "5.5.1",
                "need RCPT before DATA (no valid recipients)",
            ));
            return if self.too_many_errors() {
                Next::Close
            } else {
                Next::Continue
            };
        }
        self.reply(Reply::new(354, "", "end data with <CR><LF>.<CR><LF>"));
        Next::Data
    }

    /// Reads the message and answers it. Returns false when the connection must close.
    async fn read_data(&mut self) -> std::io::Result<bool> {
        let Some(tx) = self.tx.take() else {
            return Ok(true);
        };
        let started = Instant::now();
        let limit = usize::try_from(tx.policy.max_message_bytes).unwrap_or(usize::MAX);
        let mut reader = DataReader::new(limit);
        let mut message = Vec::new();
        loop {
            let fed = reader.feed(&self.input[self.pos..], &mut message);
            self.pos += fed.consumed;
            if fed.done {
                break;
            }
            match self
                .read_more(self.shared.config.data_timeout, false)
                .await?
            {
                Read::Bytes => {}
                Read::Eof | Read::Shutdown => {
                    self.count("aborted");
                    self.audit_tx(
                        &tx,
                        reader.size(),
                        None,
                        started.elapsed(),
                        "aborted",
                        Some("client_closed"),
                    );
                    return Ok(false);
                }
                Read::Timeout => {
                    // Nothing goes upstream: the message never ended.
                    self.count("aborted");
                    self.audit_tx(
                        &tx,
                        reader.size(),
                        None,
                        started.elapsed(),
                        "aborted",
                        Some("data_timeout"),
                    );
                    self.reply(Reply::new(
                        421,
                        "4.4.2",
                        "timeout waiting for message data, closing connection",
                    ));
                    return Ok(false);
                }
            }
        }
        let size = reader.size();
        let refusal = if reader.overflowed() {
            self.deny(Rule::MaxMessageBytes);
            Some((
                Rule::MaxMessageBytes.reply(&format!(
                    "message exceeds {} bytes",
                    tx.policy.max_message_bytes
                )),
                "policy_denied",
                Rule::MaxMessageBytes.as_str(),
            ))
        } else if reader.saw_nul() {
            Some((
                Reply::new(554, "5.6.0", "message contains NUL bytes"),
                "invalid_message",
                "nul",
            ))
        } else {
            match header_senders(&message) {
                HeaderSenders::Unparsable(h) => {
                    self.deny(Rule::AllowedSenders);
                    Some((
                        Rule::AllowedSenders.reply(&format!(
                            "the {h} header names no address that can be checked"
                        )),
                        "policy_denied",
                        Rule::AllowedSenders.as_str(),
                    ))
                }
                HeaderSenders::Addresses(list) => {
                    match list.iter().find(|a| tx.policy.check_sender(a).is_err()) {
                        Some(bad) => {
                            self.deny(Rule::AllowedSenders);
                            Some((
                                Rule::AllowedSenders
                                    .reply(&format!("header address <{bad}> is not allowed")),
                                "policy_denied",
                                Rule::AllowedSenders.as_str(),
                            ))
                        }
                        None => None,
                    }
                }
            }
        };
        // Rates last: a message the policy refuses anyway takes no token.
        let refusal = refusal.or_else(|| {
            let rates = self.shared.rate_limiters(&tx.credential);
            rates.take(tx.recipients.len() as u32).err().map(|rule| {
                self.deny(rule);
                (
                    rule.reply("rate exceeded, try again later"),
                    "policy_denied",
                    rule.as_str(),
                )
            })
        });
        if let Some((reply, outcome, reason)) = refusal {
            self.count(outcome);
            self.audit_tx(&tx, size, None, started.elapsed(), outcome, Some(reason));
            self.reply(reply);
            return Ok(true);
        }
        let envelope = match envelope(&tx.sender, &tx.recipients) {
            Ok(e) => e,
            Err(e) => {
                self.count("invalid_message");
                self.audit_tx(
                    &tx,
                    size,
                    None,
                    started.elapsed(),
                    "invalid_message",
                    Some("envelope"),
                );
                self.reply(Reply::new(501, "5.1.0", format!("invalid envelope: {e}")));
                return Ok(true);
            }
        };
        let delivery = self
            .shared
            .upstream
            .deliver(&tx.credential, &envelope, &message)
            .await;
        drop(message);
        self.shared
            .metrics
            .upstream_latency
            .observe(delivery.latency.as_secs_f64());
        self.count(delivery.outcome);
        self.audit_tx(
            &tx,
            size,
            delivery.upstream_code,
            started.elapsed(),
            delivery.outcome,
            delivery.reason,
        );
        self.reply(delivery.reply);
        Ok(true)
    }

    /// Ends a transaction that never reached the end of DATA. One whose recipients the
    /// policy refused is audited as a refused message (the client gave up because of it).
    fn abandon(&mut self) {
        if let Some(tx) = self.tx.take()
            && let Some(rule) = tx.last_refusal
        {
            self.count("policy_denied");
            self.audit_tx(&tx, 0, None, Duration::ZERO, "policy_denied", Some(rule));
        }
    }

    fn auth_start(&mut self, mechanism: u64, initial: &str) {
        if self.auth == Auth::Done {
            self.error(Reply::new(503, "5.5.1", "already authenticated"));
            return;
        }
        if self.tx.is_some() {
            self.error(Reply::new(
                503,
                "5.5.1",
                "AUTH is not allowed during a transaction",
            ));
            return;
        }
        let initial = if initial == "=" {
            Some("")
        } else if initial.is_empty() {
            None
        } else {
            Some(initial)
        };
        match (mechanism, initial) {
            (AUTH_PLAIN, None) => {
                self.auth = Auth::PlainResponse;
                self.reply(Reply::new(334, "", ""));
            }
            (AUTH_PLAIN, Some(response)) => self.auth_plain(response.as_bytes()),
            (AUTH_LOGIN, None) => {
                self.auth = Auth::LoginUser;
                self.reply(Reply::new(334, "", "VXNlcm5hbWU6"));
            }
            (AUTH_LOGIN, Some(_user)) => {
                self.auth = Auth::LoginPassword;
                self.reply(Reply::new(334, "", "UGFzc3dvcmQ6"));
            }
            _ => self.error(Reply::new(
                504,
                "5.5.4",
                "mechanism not supported; use PLAIN or LOGIN",
            )),
        }
    }

    fn auth_continue(&mut self, line: &[u8]) {
        let line = trim_crlf(line);
        if line == b"*" {
            self.auth = Auth::None;
            self.error(Reply::new(501, "5.0.0", "authentication cancelled"));
            return;
        }
        match self.auth {
            Auth::PlainResponse => self.auth_plain(line),
            Auth::LoginUser => {
                self.auth = Auth::LoginPassword;
                self.reply(Reply::new(334, "", "UGFzc3dvcmQ6"));
            }
            Auth::LoginPassword => {
                let decoded = Zeroizing::new(STANDARD.decode(line).unwrap_or_default());
                self.auth_finish(&decoded);
            }
            Auth::None | Auth::Done => {}
        }
    }

    fn auth_plain(&mut self, response: &[u8]) {
        let decoded = Zeroizing::new(STANDARD.decode(trim_crlf(response)).unwrap_or_default());
        // authzid NUL authcid NUL passwd
        let password = decoded
            .split(|&b| b == 0)
            .nth(2)
            .unwrap_or_default()
            .to_vec();
        self.auth_finish(&Zeroizing::new(password));
    }

    fn auth_finish(&mut self, password: &[u8]) {
        let ok = match &self.shared.config.local_token {
            None => true,
            Some(token) => constant_time_eq(token.as_bytes(), password),
        };
        if ok {
            self.auth = Auth::Done;
            let text = if self.shared.config.local_token.is_some() {
                "authenticated"
            } else {
                "accepted; no application credential is needed, the sidecar authenticates upstream"
            };
            self.reply(Reply::new(235, "2.7.0", text));
        } else {
            self.auth = Auth::None;
            self.error(Reply::new(535, "5.7.8", "authentication failed"));
        }
    }

    fn deny(&self, rule: Rule) {
        self.shared
            .metrics
            .policy_denials
            .get_or_create(&RuleLabel {
                rule: rule.as_str(),
            })
            .inc();
    }

    fn count(&self, outcome: &'static str) {
        self.shared
            .metrics
            .messages
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    fn audit_refusal(
        &self,
        sender: &str,
        recipients: usize,
        size: u64,
        outcome: &'static str,
        reason: Option<&str>,
        started: Instant,
    ) {
        let id = self
            .shared
            .source
            .outline()
            .map(|o| o.id)
            .unwrap_or_default();
        self.audit_line(
            &id,
            sender,
            recipients,
            0,
            size,
            None,
            started.elapsed(),
            outcome,
            reason,
        );
    }

    fn audit_tx(
        &self,
        tx: &Transaction,
        size: u64,
        code: Option<u16>,
        latency: Duration,
        outcome: &'static str,
        reason: Option<&str>,
    ) {
        self.audit_line(
            &tx.credential.id(),
            &tx.sender,
            tx.recipients.len(),
            tx.refused,
            size,
            code,
            latency,
            outcome,
            reason,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn audit_line(
        &self,
        credential: &str,
        sender: &str,
        recipients: usize,
        refused: u32,
        size: u64,
        code: Option<u16>,
        latency: Duration,
        outcome: &'static str,
        reason: Option<&str>,
    ) {
        AuditRecord {
            credential,
            pod: &self.shared.config.pod,
            sender,
            recipients,
            recipients_refused: refused,
            size,
            upstream_code: code,
            latency,
            outcome,
            reason,
        }
        .emit();
    }
}

/// Addresses the upstream envelope can carry without SMTPUTF8.
fn is_relayable(address: &str) -> bool {
    relay_address(address).is_some()
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_error_reply(e: smtp_proto::Error) -> Reply {
    use smtp_proto::Error as E;
    match e {
        E::UnknownCommand => Reply::new(500, "5.5.1", "command not recognized"),
        E::InvalidSenderAddress => Reply::new(501, "5.1.7", "invalid sender address"),
        E::InvalidRecipientAddress => Reply::new(501, "5.1.3", "invalid recipient address"),
        E::SyntaxError { syntax } => Reply::new(501, "5.5.4", format!("syntax: {syntax}")),
        E::InvalidParameter { param } => {
            Reply::new(501, "5.5.4", format!("invalid parameter {param}"))
        }
        E::UnsupportedParameter { param } => {
            Reply::new(555, "5.5.4", format!("unsupported parameter {param}"))
        }
        _ => Reply::new(500, "5.5.2", "syntax error"),
    }
}
