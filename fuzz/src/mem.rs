//! An in-memory connection: reads come from a fixed input (then EOF), writes are collected.
//! Always ready, so a session driven over it never waits on a timer.

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Input given out at most `chunk` bytes per read, so framing across reads is exercised.
pub struct MemStream {
    input: Vec<u8>,
    pos: usize,
    chunk: usize,
    pub output: Vec<u8>,
}

impl MemStream {
    pub fn new(input: &[u8], chunk: usize) -> Self {
        Self {
            input: input.to_vec(),
            pos: 0,
            chunk: chunk.max(1),
            output: Vec::new(),
        }
    }
}

impl AsyncRead for MemStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let n = (this.input.len() - this.pos)
            .min(this.chunk)
            .min(buf.remaining());
        buf.put_slice(&this.input[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MemStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Bounded like a socket buffer that nobody drains: a session that writes without end
        // must fail rather than exhaust memory.
        if self.output.len() > 16 << 20 {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        self.output.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One current-thread runtime (with timers and I/O) for every run of a target.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("cannot build a tokio runtime: {e}"),
        }
    })
}

/// Splits fuzz input into a read size (first byte) and the rest.
pub fn chunked(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((first, rest)) => (usize::from(*first).max(1) * 7, rest),
        None => (1, data),
    }
}
