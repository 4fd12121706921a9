//! Command-line framing with a hard bound: a line longer than the limit is discarded up to its
//! LF while the buffer stays at the limit (RFC 5321 4.5.3.1.4: 1000 octets with CRLF).

/// Result of looking for the next command line in buffered input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line (LF included) of `len` bytes at the start of the buffer.
    Complete(usize),
    /// A line exceeded the limit; `consumed` bytes (through its LF) are to be dropped.
    TooLong { consumed: usize },
    /// No LF yet; keep reading (`discarding` says an over-long line is being skipped).
    Incomplete,
}

/// Scans for the next line. `discarding` carries "we are inside an over-long line" across
/// reads; the caller drops the bytes reported consumed.
#[derive(Debug)]
pub struct LineFramer {
    max_line: usize,
    discarding: bool,
}

impl LineFramer {
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            discarding: false,
        }
    }

    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Looks at `buf` (the unconsumed input). Returns what to do and, for `Incomplete` while
    /// discarding, how many bytes may already be dropped (always all of them).
    pub fn next(&mut self, buf: &[u8]) -> (Line, usize) {
        let lf = memchr(buf);
        if self.discarding {
            return match lf {
                Some(pos) => {
                    self.discarding = false;
                    (Line::TooLong { consumed: pos + 1 }, pos + 1)
                }
                None => (Line::Incomplete, buf.len()),
            };
        }
        match lf {
            Some(pos) if pos < self.max_line => (Line::Complete(pos + 1), 0),
            Some(pos) => (Line::TooLong { consumed: pos + 1 }, pos + 1),
            None if buf.len() >= self.max_line => {
                self.discarding = true;
                (Line::Incomplete, buf.len())
            }
            None => (Line::Incomplete, 0),
        }
    }
}

fn memchr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn line_of_exactly_the_limit_is_accepted() {
        let mut f = LineFramer::new(1000);
        let mut line = vec![b'a'; 998];
        line.extend_from_slice(b"\r\n");
        assert_eq!(f.next(&line), (Line::Complete(1000), 0));
    }

    #[test]
    fn line_one_over_the_limit_is_refused() {
        let mut f = LineFramer::new(1000);
        let mut line = vec![b'a'; 999];
        line.extend_from_slice(b"\r\n");
        assert_eq!(f.next(&line), (Line::TooLong { consumed: 1001 }, 1001));
    }

    #[test]
    fn long_line_across_reads_is_discarded_without_buffering() {
        let mut f = LineFramer::new(1000);
        // 5 reads of 4000 bytes with no LF: every byte may be dropped at once.
        for _ in 0..5 {
            let chunk = vec![b'x'; 4000];
            assert_eq!(f.next(&chunk), (Line::Incomplete, 4000));
        }
        assert_eq!(
            f.next(b"yy\r\nNOOP\r\n"),
            (Line::TooLong { consumed: 4 }, 4)
        );
        assert_eq!(f.next(b"NOOP\r\n"), (Line::Complete(6), 0));
    }

    proptest! {
        /// Whatever arrives, the framer never asks the caller to keep more than the limit.
        #[test]
        fn buffer_never_exceeds_limit(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..20), max in 64usize..8192) {
            let mut f = LineFramer::new(max);
            let mut buf: Vec<u8> = Vec::new();
            for chunk in chunks {
                buf.extend_from_slice(&chunk);
                loop {
                    let (line, drop) = f.next(&buf);
                    match line {
                        Line::Complete(n) => {
                            prop_assert!(n <= max);
                            prop_assert_eq!(buf[n - 1], b'\n');
                            buf.drain(..n);
                        }
                        Line::TooLong { consumed } => {
                            prop_assert_eq!(consumed, drop);
                            buf.drain(..consumed);
                        }
                        Line::Incomplete => {
                            buf.drain(..drop);
                            break;
                        }
                    }
                }
                prop_assert!(buf.len() < max);
            }
        }
    }
}
