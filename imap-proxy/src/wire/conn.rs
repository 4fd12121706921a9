//! A byte stream with a bounded, growable read buffer and a write buffer, used for both the
//! application and the upstream side. One owner drives both directions (no split halves),
//! so a session is a single task and needs no locks.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::write::deadline;
use crate::error::{Error, Side};
use crate::scrub::Scrubber;

pub struct Conn<S> {
    pub(super) io: S,
    pub(super) side: Side,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_buf: usize,
    pub(super) out: Vec<u8>,
    pub(super) out_cap: usize,
    pub(super) write_timeout: Duration,
    /// Set on the application side once a secret exists: everything written passes it.
    pub(super) scrubber: Option<Scrubber>,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// One line read with a length bound.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The line without its CRLF (or bare LF).
    Complete(Vec<u8>),
    /// The line was longer than allowed; it has been read and thrown away up to its end.
    /// `tail` holds its last bytes (CRLF excluded), enough to see a literal announcement.
    TooLong { tail: Vec<u8> },
}

/// Bytes kept from the end of a line: `{` + 20 digits + `+}` + CRLF fit.
const TAIL_BYTES: usize = 32;

pub(crate) fn push_tail(tail: &mut Vec<u8>, data: &[u8]) {
    tail.extend_from_slice(&data[data.len().saturating_sub(TAIL_BYTES)..]);
    if tail.len() > TAIL_BYTES {
        tail.drain(..tail.len() - TAIL_BYTES);
    }
}

fn strip_crlf(mut line: &[u8]) -> &[u8] {
    if let Some(l) = line.strip_suffix(b"\n") {
        line = l;
    }
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// `initial_buf` grows on demand up to `max_buf` (the longest line accepted plus CRLF).
    pub fn new(
        io: S,
        side: Side,
        initial_buf: usize,
        max_buf: usize,
        out_cap: usize,
        write_timeout: Duration,
    ) -> Self {
        let initial = initial_buf.min(max_buf).max(64);
        Self {
            io,
            side,
            buf: vec![0; initial],
            start: 0,
            end: 0,
            max_buf: max_buf.max(initial),
            out: Vec::new(),
            out_cap,
            write_timeout,
            scrubber: None,
            bytes_read: 0,
            bytes_written: 0,
        }
    }

    pub fn side(&self) -> Side {
        self.side
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Current size of the read buffer (bounded by the line limit).
    pub fn read_capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// True when the read buffer is at its bound and holds no free space.
    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.buf.len() && self.buf.len() >= self.max_buf
    }

    /// One read from the socket into the buffer. Returns the number of bytes read; 0 means
    /// end of stream or (when [`Conn::is_full`]) no room. Cancel-safe: a read that did not
    /// complete consumed nothing.
    pub async fn fill(&mut self) -> Result<usize, Error> {
        if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= self.max_buf {
                return Ok(0);
            }
            let grown = (self.buf.len() * 2).min(self.max_buf);
            self.buf.resize(grown, 0);
        }
        let n = self
            .io
            .read(&mut self.buf[self.end..])
            .await
            .map_err(Error::io(self.side))?;
        self.end += n;
        self.bytes_read += n as u64;
        Ok(n)
    }

    /// Like [`Conn::fill`], but end of stream is an error and the wait is bounded.
    pub async fn fill_within(
        &mut self,
        timeout: Duration,
        during: &'static str,
    ) -> Result<(), Error> {
        if self.is_full() {
            return Err(Error::Closed { side: self.side });
        }
        let side = self.side;
        match deadline(timeout, self.fill()).await {
            Ok(Ok(0)) => Err(Error::Closed { side }),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout {
                side,
                timeout,
                during,
            }),
        }
    }

    /// Gives back memory a long line made the buffer take, once it is no longer needed.
    pub fn shrink(&mut self, to: usize) {
        if self.buf.len() > to && self.end - self.start <= to {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            self.buf.truncate(to.max(self.end));
            self.buf.shrink_to_fit();
        }
    }

    /// Reads one line of at most `max` bytes (CRLF excluded). A longer line is drained to its
    /// end without being stored and reported as [`Line::TooLong`].
    pub async fn read_line(
        &mut self,
        max: usize,
        timeout: Duration,
        during: &'static str,
    ) -> Result<Line, Error> {
        let mut scanned = 0;
        loop {
            let data = self.buffered();
            if let Some(pos) = data[scanned..].iter().position(|&b| b == b'\n') {
                let lf = scanned + pos;
                let mut line_end = lf;
                if line_end > 0 && data[line_end - 1] == b'\r' {
                    line_end -= 1;
                }
                if line_end > max {
                    let mut tail = Vec::new();
                    push_tail(&mut tail, &data[..line_end]);
                    self.consume(lf + 1);
                    return Ok(Line::TooLong { tail });
                }
                let line = data[..line_end].to_vec();
                self.consume(lf + 1);
                return Ok(Line::Complete(line));
            }
            scanned = data.len();
            if scanned > max + 1 {
                let tail = self.drain_line(timeout, during).await?;
                return Ok(Line::TooLong { tail });
            }
            self.fill_within(timeout, during).await?;
        }
    }

    /// Throws away input up to and including the next LF, holding at most one buffer of it.
    async fn drain_line(
        &mut self,
        timeout: Duration,
        during: &'static str,
    ) -> Result<Vec<u8>, Error> {
        let mut tail = Vec::with_capacity(2 * TAIL_BYTES);
        loop {
            let data = self.buffered();
            if let Some(pos) = data.iter().position(|&b| b == b'\n') {
                push_tail(&mut tail, &data[..=pos]);
                self.consume(pos + 1);
                let line = strip_crlf(&tail).to_vec();
                return Ok(line);
            }
            push_tail(&mut tail, data);
            let all = data.len();
            self.consume(all);
            self.fill_within(timeout, during).await?;
        }
    }

    /// Reads exactly `n` bytes (a small literal) into memory.
    pub async fn read_exact_bytes(
        &mut self,
        n: usize,
        timeout: Duration,
        during: &'static str,
    ) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.buffered().is_empty() {
                self.fill_within(timeout, during).await?;
            }
            let take = (n - out.len()).min(self.buffered().len());
            out.extend_from_slice(&self.buffered()[..take]);
            self.consume(take);
        }
        Ok(out)
    }

    /// Reads and drops exactly `n` bytes.
    pub async fn discard(
        &mut self,
        mut n: u64,
        timeout: Duration,
        during: &'static str,
    ) -> Result<(), Error> {
        while n > 0 {
            if self.buffered().is_empty() {
                self.fill_within(timeout, during).await?;
            }
            let take = usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(self.buffered().len());
            self.consume(take);
            n -= take as u64;
        }
        Ok(())
    }

    /// The stream, once nothing is buffered in either direction (STARTTLS upgrade).
    pub fn into_inner(self) -> Result<S, Error> {
        if self.start != self.end || !self.out.is_empty() {
            return Err(Error::UpstreamProtocol(
                "data arrived before the TLS handshake (STARTTLS injection?)".into(),
            ));
        }
        Ok(self.io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn long_line_is_drained_without_growing_past_the_bound() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut conn = Conn::new(a, Side::App, 64, 1026, 1024, T);
        let writer = tokio::spawn(async move {
            let long = vec![b'x'; 70 * 1024];
            b.write_all(&long).await.unwrap();
            b.write_all(b"\r\nA1 NOOP\r\n").await.unwrap();
            b
        });
        assert!(matches!(
            conn.read_line(1024, T, "test").await.unwrap(),
            Line::TooLong { .. }
        ));
        assert!(conn.buf.len() <= 1026, "buffer grew to {}", conn.buf.len());
        assert_eq!(
            conn.read_line(1024, T, "test").await.unwrap(),
            Line::Complete(b"A1 NOOP".to_vec())
        );
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn line_of_exactly_the_bound_is_accepted() {
        let (a, mut b) = tokio::io::duplex(4096);
        let mut conn = Conn::new(a, Side::App, 64, 1026, 1024, T);
        let mut line = vec![b'y'; 1024];
        line.extend_from_slice(b"\r\n");
        b.write_all(&line).await.unwrap();
        assert_eq!(
            conn.read_line(1024, T, "test").await.unwrap(),
            Line::Complete(vec![b'y'; 1024])
        );
    }

    #[tokio::test]
    async fn queued_bytes_go_out_before_a_large_direct_write() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut conn = Conn::new(a, Side::App, 64, 1026, 32 * 1024, T);
        conn.write(b"* 1 FETCH (BODY[] {20000}\r\n").await.unwrap();
        conn.write(&[b'z'; 20000]).await.unwrap();
        conn.write(b")\r\n").await.unwrap();
        conn.flush().await.unwrap();
        drop(conn);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
            .await
            .unwrap();
        assert!(got.starts_with(b"* 1 FETCH (BODY[] {20000}\r\nzzz"));
        assert!(got.ends_with(b"zzz)\r\n"));
        assert_eq!(got.len(), 27 + 20000 + 3);
    }

    #[tokio::test]
    async fn eof_mid_line_is_closed_error() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut conn = Conn::new(a, Side::App, 64, 1026, 1024, T);
        b.write_all(b"A1 NOO").await.unwrap();
        drop(b);
        let err = conn.read_line(1024, T, "test").await.unwrap_err();
        assert_eq!(err.metric_label(), "app_closed");
    }
}
