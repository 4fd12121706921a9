//! The write half of [`Conn`]: a write buffer sent in large chunks, secrets written around
//! it, the optional [`Scrubber`] every application-bound byte passes, and bounded waits.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::conn::Conn;
use crate::error::{Error, Side};
use crate::scrub::Scrubber;

/// Writes at least this large skip the write buffer: a FETCH body goes to the socket in the
/// chunks it arrived in, never copied twice (unless a scrubber must see it).
const DIRECT_WRITE_BYTES: usize = 16 * 1024;

/// [`Conn::write_from`] reads at least this much at a time, even into a nearly full buffer.
const MIN_READ: usize = 4 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// From now on, every byte written is scrubbed of the secret's forms before it leaves.
    /// Writes then always go through the buffer, which keeps back the last few bytes until a
    /// flush, so a form split across two writes is still caught.
    pub fn set_scrubber(&mut self, scrubber: Scrubber) {
        self.scrubber = Some(scrubber);
    }

    /// Queues bytes for sending; large writes go straight to the socket after what is queued.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.scrubber.is_some() {
            self.out.extend_from_slice(data);
            self.bytes_written += data.len() as u64;
            if self.out.len() >= self.out_cap {
                self.write_scrubbed(false).await?;
            }
            return Ok(());
        }
        // Order matters: whatever is queued goes first, then a large chunk directly.
        if self.out.len() + data.len() > self.out_cap || data.len() >= DIRECT_WRITE_BYTES {
            self.write_out().await?;
        }
        if data.len() >= DIRECT_WRITE_BYTES {
            self.write_all_bounded(data, "writing").await?;
        } else {
            self.out.extend_from_slice(data);
        }
        self.bytes_written += data.len() as u64;
        Ok(())
    }

    /// Reads at most `max` bytes of `from`'s stream straight into the write buffer and queues
    /// them as [`Conn::write`] would: a literal the proxy relays without looking into costs
    /// one copy fewer than through `from`'s read buffer (issue #15: the FETCH body path).
    /// `from`'s read buffer must be empty, or bytes would be reordered.
    pub async fn write_from<A: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        from: &mut Conn<A>,
        max: u64,
        timeout: Duration,
        during: &'static str,
    ) -> Result<usize, Error> {
        debug_assert!(from.buffered().is_empty());
        if self.out.len() >= self.out_cap {
            self.send_queued().await?;
        }
        let room = self.out_cap.saturating_sub(self.out.len()).max(MIN_READ);
        let room = u64::try_from(room).unwrap_or(u64::MAX).min(max);
        self.out
            .reserve(usize::try_from(room).unwrap_or(usize::MAX));
        let side = from.side;
        let read = deadline(timeout, (&mut from.io).take(room).read_buf(&mut self.out)).await;
        let n = match read {
            Ok(Ok(0)) => return Err(Error::Closed { side }),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(Error::io(side)(e)),
            Err(_) => {
                return Err(Error::Timeout {
                    side,
                    timeout,
                    during,
                });
            }
        };
        from.bytes_read += n as u64;
        self.bytes_written += n as u64;
        if self.out.len() >= self.out_cap {
            self.send_queued().await?;
        }
        Ok(n)
    }

    /// Sends what is queued, keeping back (when scrubbing) what a form could continue from.
    async fn send_queued(&mut self) -> Result<(), Error> {
        if self.scrubber.is_some() {
            self.write_scrubbed(false).await
        } else {
            self.write_out().await
        }
    }

    /// Writes a secret straight to the socket, never through the reusable write buffer.
    pub async fn write_secret(&mut self, secret: &[u8]) -> Result<(), Error> {
        self.write_out().await?;
        self.write_all_bounded(secret, "writing").await?;
        self.bytes_written += secret.len() as u64;
        Ok(())
    }

    async fn write_all_bounded(&mut self, data: &[u8], during: &'static str) -> Result<(), Error> {
        let (side, timeout) = (self.side, self.write_timeout);
        match deadline(timeout, self.io.write_all(data)).await {
            Ok(r) => r.map_err(Error::io(side)),
            Err(_) => Err(Error::Timeout {
                side,
                timeout,
                during,
            }),
        }
    }

    async fn write_out(&mut self) -> Result<(), Error> {
        if self.scrubber.is_some() {
            return self.write_scrubbed(true).await;
        }
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            let r = self.write_all_bounded(&out, "writing").await;
            self.out = out;
            self.out.clear();
            r?;
        }
        Ok(())
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.write_out().await?;
        let (side, timeout) = (self.side, self.write_timeout);
        match deadline(timeout, self.io.flush()).await {
            Ok(r) => r.map_err(Error::io(side)),
            Err(_) => Err(Error::Timeout {
                side,
                timeout,
                during: "flushing",
            }),
        }
    }

    /// Scrubs the buffer and sends it; unless `all`, keeps back the bytes a form could still
    /// continue from (they were scrubbed as far as they go and are scanned again with what
    /// follows).
    async fn write_scrubbed(&mut self, all: bool) -> Result<(), Error> {
        let Some(scrubber) = &self.scrubber else {
            return Ok(());
        };
        scrubber.scrub_in_place(&mut self.out);
        let keep = if all {
            0
        } else {
            scrubber.overlap().min(self.out.len())
        };
        let send = self.out.len() - keep;
        if send == 0 {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.out);
        let r = self.write_all_bounded(&out[..send], "writing").await;
        out.drain(..send);
        self.out = out;
        r
    }

    pub fn has_unflushed(&self) -> bool {
        !self.out.is_empty()
    }

    /// Best-effort orderly close (TLS close_notify / FIN).
    pub async fn shutdown(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            let _ = self.flush().await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }
}

/// Runs `fut` with a deadline, but arms a timer only if the first poll does not finish:
/// most reads and writes complete at once, and a timer per socket call costs a wake-up of the
/// runtime's driver on every request.
pub async fn deadline<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, tokio::time::error::Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(v) => Ok(v),
        std::task::Poll::Pending => tokio::time::timeout(timeout, fut).await,
    }
}

/// Bounds a future that writes to `side`.
pub async fn within<T>(
    side: Side,
    timeout: Duration,
    during: &'static str,
    fut: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout {
            side,
            timeout,
            during,
        }),
    }
}

/// Writes `tag status text`.
pub async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    tag: &[u8],
    status: &str,
    text: &str,
) -> Result<(), Error> {
    let mut out = Vec::with_capacity(tag.len() + status.len() + text.len() + 4);
    out.extend_from_slice(tag);
    out.push(b' ');
    out.extend_from_slice(status.as_bytes());
    out.push(b' ');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
    conn.write(&out).await
}
