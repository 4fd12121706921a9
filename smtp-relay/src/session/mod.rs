//! One application connection: the ESMTP state machine (RFC 5321, with PIPELINING, SIZE,
//! 8BITMIME, ENHANCEDSTATUSCODES). This file is the dispatch; each phase or command is an
//! `impl Session` block of its own file. The application hears 250 only after upstream did.

mod account;
mod audit;
mod auth;
mod data;
mod ehlo;
mod io;
mod mail;
mod state;

use std::borrow::Cow;

use smtp_proto::Request;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use self::io::READ_CHUNK;
use self::state::{Auth, Next, Read, Transaction};
use crate::shared::Shared;
use crate::upstream::Upstream;
use crate::wire::line::{Line, LineFramer};
use crate::wire::reply::Reply;

/// Replies buffered before they are written even if more pipelined commands wait; with the
/// write timeout this bounds what a client that never reads can make the relay hold.
const MAX_PENDING_OUTPUT: usize = 64 * 1024;

pub(crate) struct Session<'a, U: Upstream, S> {
    shared: &'a Shared<U>,
    io: S,
    input: Vec<u8>,
    pos: usize,
    out: Vec<u8>,
    framer: LineFramer,
    greeted: bool,
    auth: Auth,
    /// AUTH LOGIN's user name until the password step (the account's name, or anything).
    login_user: Zeroizing<Vec<u8>>,
    /// Account-set mode: the account AUTH picked.
    account: Option<String>,
    /// Its credential id (`namespace/name`) as the directory had it at AUTH.
    account_id: Option<String>,
    tx: Option<Transaction<U::Transaction>>,
    errors: u32,
    shutdown: CancellationToken,
}

impl<'a, U: Upstream, S: AsyncRead + AsyncWrite + Unpin> Session<'a, U, S> {
    pub(crate) fn new(shared: &'a Shared<U>, io: S, shutdown: CancellationToken) -> Self {
        Self {
            framer: LineFramer::new(shared.config.effective_max_line()),
            shared,
            io,
            input: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            out: Vec::with_capacity(1024),
            greeted: false,
            auth: Auth::None,
            login_user: Zeroizing::new(Vec::new()),
            account: None,
            account_id: None,
            tx: None,
            errors: 0,
            shutdown,
        }
    }

    /// Serves the connection until QUIT, EOF, a timeout or shutdown. I/O errors end it quietly:
    /// the application went away (or stopped reading).
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
        self.abandon().await;
        let _ = self.flush().await;
        let _ = tokio::time::timeout(self.shared.config.write_timeout, self.io.shutdown()).await;
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
                    if !self.wait_for_command().await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Reads more command input; false when the connection is to close.
    async fn wait_for_command(&mut self) -> std::io::Result<bool> {
        let timeout = self.shared.config.command_timeout;
        // Between transactions a shutdown closes the connection; inside one the message is
        // in flight and may finish.
        let interruptible = self.tx.is_none();
        let reply = match self.read_more(timeout, interruptible).await? {
            Read::Bytes => return Ok(true),
            Read::Eof => return Ok(false),
            Read::Timeout => Reply::new(421, "4.4.2", "idle timeout, closing connection"),
            Read::Shutdown => Reply::new(421, "4.3.2", "sidecar shutting down, try again"),
        };
        self.reply(reply);
        Ok(false)
    }

    async fn handle_line(&mut self, line: &[u8]) -> Next {
        if self.auth.in_progress() {
            self.auth_continue(line);
            return Next::Continue;
        }
        let next = match parse_command(line) {
            Ok(request) => self.dispatch(request).await,
            Err(reply) => {
                self.error(reply);
                Next::Continue
            }
        };
        match next {
            Next::Continue if self.too_many_errors() => Next::Close,
            next => next,
        }
    }

    async fn dispatch(&mut self, request: Request<Cow<'_, str>>) -> Next {
        match request {
            Request::Ehlo { host } => self.ehlo(&host).await,
            Request::Helo { .. } => self.helo().await,
            Request::Mail { from } => {
                let reply = self.mail(&from.address, from.size, from.flags).await;
                self.answer(reply);
            }
            Request::Rcpt { to } => {
                let reply = self.rcpt(&to.address).await;
                self.answer(reply);
            }
            Request::Data => return self.data_command(),
            Request::Rset => {
                self.abandon().await;
                self.reply(Reply::new(250, "2.0.0", "reset"));
            }
            Request::Noop { .. } => self.reply(Reply::new(250, "2.0.0", "ok")),
            Request::Quit => {
                self.abandon().await;
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
        Next::Continue
    }
}

/// The command on `line`, or the reply that refuses it.
fn parse_command(line: &[u8]) -> Result<Request<Cow<'_, str>>, Reply> {
    let Ok(text) = std::str::from_utf8(line) else {
        return Err(Reply::new(500, "5.5.2", "command is not valid UTF-8"));
    };
    if text.contains('\0') {
        return Err(Reply::new(500, "5.5.2", "command contains NUL"));
    }
    Request::parse(&mut line.iter()).map_err(parse_error_reply)
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
