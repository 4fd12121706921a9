//! The session's I/O: buffered input with timeouts and shutdown, and replies collected and
//! written in one go (PIPELINING), every write bounded by the write timeout.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Session;
use super::state::Read;
use crate::upstream::Upstream;
use crate::wire::reply::Reply;

pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// Protocol errors tolerated on one connection before it is closed.
const MAX_ERRORS: u32 = 100;

impl<U: Upstream, S: AsyncRead + AsyncWrite + Unpin> Session<'_, U, S> {
    pub(super) async fn read_more(
        &mut self,
        timeout: Duration,
        interruptible: bool,
    ) -> std::io::Result<Read> {
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

    /// Writes the pending replies. A client that does not read them within the write
    /// timeout loses its connection (an error ends the session).
    pub(super) async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(self.shared.config.write_timeout, write).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the application did not read its replies in time",
                ));
            }
        }
        self.out.clear();
        Ok(())
    }

    pub(super) fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
    }

    /// A refusal or protocol error: counted towards the error limit.
    pub(super) fn error(&mut self, reply: Reply) {
        self.errors += 1;
        self.reply(reply);
    }

    /// Positive replies as they are, negative ones counted as errors.
    pub(super) fn answer(&mut self, reply: Reply) {
        if reply.is_positive() {
            self.reply(reply);
        } else {
            self.error(reply);
        }
    }

    pub(super) fn too_many_errors(&mut self) -> bool {
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
}
