//! The relay's own SMTP client wire layer: bounded reply reading and timed writes on any
//! stream (plain TCP before STARTTLS, TLS after). Replies are parsed here, never trusted
//! beyond their code; their text is scrubbed before anyone else sees it (errors.rs).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::errors::UpstreamError;

/// Longest reply line accepted from upstream (RFC 5321 4.5.3.1.5: 512 octets with CRLF).
const MAX_REPLY_LINE: usize = 2048;
/// Lines in one multi-line reply (EHLO answers are the longest, ~20 lines).
const MAX_REPLY_LINES: usize = 64;
const READ_CHUNK: usize = 8 * 1024;

/// One upstream reply: its code and the text of each line (without code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl UpstreamReply {
    pub fn is_positive_completion(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The text of all lines, joined by spaces (for relaying, after scrubbing).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }
}

/// A connection to the upstream server, with its unread input.
pub struct Conn<S> {
    io: S,
    input: Vec<u8>,
    timeout: Duration,
    /// Upstream offered CHUNKING (RFC 3030) in its EHLO over TLS: a message goes as one
    /// `BDAT n LAST`, one round trip instead of DATA's two.
    chunking: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Conn<S> {
    pub fn new(io: S, timeout: Duration) -> Self {
        Self {
            io,
            input: Vec::with_capacity(READ_CHUNK),
            timeout,
            chunking: false,
        }
    }

    /// Records what the session's last EHLO offered (connect.rs).
    pub fn set_capabilities(&mut self, capabilities: &[String]) {
        self.chunking = capabilities.iter().any(|c| c == "CHUNKING");
    }

    pub fn chunking(&self) -> bool {
        self.chunking
    }

    /// Gives back the read buffer while the connection waits in the pool: the sidecar runs
    /// in every pod, and eight idle connections kept 64 KiB of empty buffers (heaptrack,
    /// issue #15). The next read allocates it again.
    pub fn release_read_buffer(&mut self) {
        if self.input.is_empty() {
            self.input = Vec::new();
        }
    }

    /// Bytes upstream sent that no reply has consumed yet.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// The stream, for the TLS upgrade. Callers check [`Conn::buffered`] first.
    pub fn into_inner(self) -> S {
        self.io
    }

    /// Writes `bytes` (one or more command lines, or message data) within the timeout.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        let write = async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) => Err(UpstreamError::Io(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends one command line (CRLF appended) and reads its reply.
    pub async fn command(&mut self, line: &[u8]) -> Result<UpstreamReply, UpstreamError> {
        let mut wire = Vec::with_capacity(line.len() + 2);
        wire.extend_from_slice(line);
        wire.extend_from_slice(b"\r\n");
        let result = self.write(&wire).await;
        // The wire copy may hold an AUTH line: do not leave it in freed memory.
        zeroize::Zeroize::zeroize(&mut wire);
        result?;
        self.read_reply().await
    }

    /// Reads one complete (possibly multi-line) reply.
    pub async fn read_reply(&mut self) -> Result<UpstreamReply, UpstreamError> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            let (code, last, text) = parse_reply_line(&line)?;
            if let Some(first) = lines.first().map(|(c, _): &(u16, String)| *c)
                && first != code
            {
                return Err(UpstreamError::Protocol("reply lines with different codes"));
            }
            lines.push((code, text));
            if last {
                break;
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(UpstreamError::Protocol("reply has too many lines"));
            }
        }
        let code = lines.first().map(|(c, _)| *c).unwrap_or_default();
        Ok(UpstreamReply {
            code,
            lines: lines.into_iter().map(|(_, t)| t).collect(),
        })
    }

    async fn read_line(&mut self) -> Result<Vec<u8>, UpstreamError> {
        loop {
            if let Some(lf) = self.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=lf).collect();
                return Ok(line);
            }
            if self.input.len() >= MAX_REPLY_LINE {
                return Err(UpstreamError::Protocol("reply line too long"));
            }
            self.input.reserve(READ_CHUNK);
            let read = tokio::time::timeout(self.timeout, self.io.read_buf(&mut self.input));
            match read.await {
                Err(_) => return Err(UpstreamError::Timeout),
                Ok(Err(e)) => return Err(UpstreamError::Io(e)),
                Ok(Ok(0)) => return Err(UpstreamError::Closed),
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// `NNN-text` or `NNN text` or `NNN`: the code, whether it is the last line, and the text.
fn parse_reply_line(line: &[u8]) -> Result<(u16, bool, String), UpstreamError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line
        .get(..3)
        .filter(|d| d.iter().all(u8::is_ascii_digit))
        .ok_or(UpstreamError::Protocol("reply line without a code"))?;
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(200..600).contains(&code) {
        return Err(UpstreamError::Protocol("reply code out of range"));
    }
    let (last, rest) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(UpstreamError::Protocol("malformed reply line")),
    };
    Ok((code, last, String::from_utf8_lossy(rest).into_owned()))
}

/// Dot-stuffs `message` (CRLF line ends only, as the DATA reader produced it) into chunks of
/// about `chunk` bytes and appends the end marker: each chunk is one large write.
pub fn stuffed_chunks(message: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut current = Vec::with_capacity(chunk.min(message.len() + 8));
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            current.push(b'.');
        }
        current.push(b);
        line_start = b == b'\n';
        if current.len() >= chunk && line_start {
            chunks.push(std::mem::replace(&mut current, Vec::with_capacity(chunk)));
        }
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        current.extend_from_slice(b"\r\n");
    }
    current.extend_from_slice(b".\r\n");
    chunks.push(current);
    chunks
}

/// `BDAT <size> LAST` and the message in writes of about `chunk` bytes, the command line in
/// the first (one segment for a small message). No dot-stuffing: BDAT counts octets. A
/// message that does not end its last line gets CRLF, as [`stuffed_chunks`] does for DATA.
pub fn bdat_writes(message: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let tail: &[u8] = if message.is_empty() || message.ends_with(b"\r\n") {
        b""
    } else {
        b"\r\n"
    };
    let size = message.len() + tail.len();
    let mut first = format!("BDAT {size} LAST\r\n").into_bytes();
    let head = chunk.min(message.len());
    first.extend_from_slice(&message[..head]);
    let mut writes = vec![first];
    writes.extend(message[head..].chunks(chunk.max(1)).map(<[u8]>::to_vec));
    if let Some(last) = writes.last_mut() {
        last.extend_from_slice(tail);
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse() {
        assert_eq!(
            parse_reply_line(b"250-PIPELINING\r\n").unwrap(),
            (250, false, "PIPELINING".into())
        );
        assert_eq!(
            parse_reply_line(b"354\r\n").unwrap(),
            (354, true, String::new())
        );
        assert!(parse_reply_line(b"25x ok\r\n").is_err());
        assert!(parse_reply_line(b"250_ok\r\n").is_err());
        assert!(parse_reply_line(b"999 ok\r\n").is_err());
    }

    #[test]
    fn stuffing_doubles_leading_dots_and_ends_the_data() {
        let chunks = stuffed_chunks(b".a\r\nb\r\n..c\r\n", 4);
        let all: Vec<u8> = chunks.concat();
        assert_eq!(all, b"..a\r\nb\r\n...c\r\n.\r\n");
        assert!(chunks.len() > 1);
        assert_eq!(stuffed_chunks(b"", 64).concat(), b".\r\n");
    }

    #[test]
    fn bdat_counts_octets_without_stuffing() {
        let writes = bdat_writes(b".a\r\nb\r\n", 64);
        assert_eq!(writes, vec![b"BDAT 7 LAST\r\n.a\r\nb\r\n".to_vec()]);
        let unterminated: Vec<u8> = bdat_writes(b"abc", 2).concat();
        assert_eq!(unterminated, b"BDAT 5 LAST\r\nabc\r\n");
        let long = vec![b'x'; 10];
        let writes = bdat_writes(&long, 4);
        assert_eq!(writes.len(), 3);
        assert_eq!(writes[0], b"BDAT 12 LAST\r\nxxxx");
        assert_eq!(writes.concat().len(), "BDAT 12 LAST\r\n".len() + 12);
        assert_eq!(bdat_writes(b"", 8).concat(), b"BDAT 0 LAST\r\n");
    }

    #[tokio::test]
    async fn multi_line_reply_and_leftover_bytes() {
        let (mut server, client) = tokio::io::duplex(1024);
        server
            .write_all(b"250-a\r\n250 b\r\n220 next")
            .await
            .unwrap();
        let mut conn = Conn::new(client, Duration::from_secs(5));
        let reply = conn.read_reply().await.unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines, vec!["a", "b"]);
        assert_eq!(conn.buffered(), 8);
        // Unread bytes are never released with the buffer.
        conn.release_read_buffer();
        assert_eq!(conn.buffered(), 8);
    }

    #[tokio::test]
    async fn a_released_buffer_reads_again() {
        let (mut server, client) = tokio::io::duplex(1024);
        let mut conn = Conn::new(client, Duration::from_secs(5));
        server.write_all(b"250 first\r\n").await.unwrap();
        assert_eq!(conn.read_reply().await.unwrap().lines, vec!["first"]);
        conn.release_read_buffer();
        assert_eq!(conn.input.capacity(), 0);
        server.write_all(b"250 second\r\n").await.unwrap();
        assert_eq!(conn.read_reply().await.unwrap().lines, vec!["second"]);
    }
}
