//! The DATA phase: dot-unstuffing (RFC 5321 4.5.2), end-of-data detection, line-ending
//! normalization and a size bound enforced while reading.
//!
//! Only `CRLF . CRLF` ends the data. A bare LF or a bare CR is turned into CRLF in the relayed
//! copy, and a `.` line after one is *not* an end marker: this closes SMTP smuggling, where an
//! upstream that also accepts `LF . LF` or `CR . CR` would see a second message the policy never
//! checked. (lettre dot-stuffs only after CRLF, so a bare CR passed on would reach upstream as
//! `CR . CR` unstuffed.)
//! (smtp-proto's `DataReceiver` also unstuffs, but appends to an unbounded buffer and undoes
//! a byte across chunk boundaries, so it cannot stream into a bounded sink; it is not used here.)

/// Where the reader is inside the current line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line; `crlf` says the previous line ended with a real CRLF.
    LineStart { crlf: bool },
    /// Saw a `.` at the start of a line.
    Dot { crlf: bool },
    /// Saw `.` CR at the start of a line.
    DotCr { crlf: bool },
    /// Inside a line.
    Mid,
    /// Inside a line, after a CR.
    MidCr,
}

/// How one `feed` call ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Fed {
    /// Input bytes used; the rest (after the end marker) belongs to the next command.
    pub consumed: usize,
    /// The end-of-data marker was seen.
    pub done: bool,
}

/// Streams DATA content into a sink, never holding more than `limit` bytes.
#[derive(Debug)]
pub struct DataReader {
    state: State,
    limit: usize,
    /// Bytes of unstuffed, normalized content seen (counted even when discarded).
    size: u64,
    overflow: bool,
    /// Storing stopped because the relay-wide memory budget ran out.
    shed: bool,
    nul: bool,
    bare_newline: bool,
}

impl DataReader {
    pub fn new(limit: usize) -> Self {
        Self {
            // The DATA command line ended with CRLF: a first line of "." ends an empty message.
            state: State::LineStart { crlf: true },
            limit,
            size: 0,
            overflow: false,
            shed: false,
            nul: false,
            bare_newline: false,
        }
    }

    /// Content size in bytes (including discarded bytes once over the limit).
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn overflowed(&self) -> bool {
        self.overflow
    }
    /// Stops storing (the caller frees the sink): the rest is read to the end marker and
    /// discarded, and the message will be refused as a temporary failure.
    pub fn shed(&mut self) {
        self.shed = true;
    }
    pub fn was_shed(&self) -> bool {
        self.shed
    }
    pub fn saw_nul(&self) -> bool {
        self.nul
    }
    /// A bare LF or bare CR was seen (and normalized to CRLF).
    pub fn saw_bare_newline(&self) -> bool {
        self.bare_newline
    }

    /// A CR not followed by LF ends the line, like a bare LF: it is relayed as CRLF, and the
    /// next line cannot end the data.
    fn bare_cr(&mut self, sink: &mut Vec<u8>) {
        self.bare_newline = true;
        self.emit(sink, b"\r\n");
        self.state = State::LineStart { crlf: false };
    }

    fn emit(&mut self, sink: &mut Vec<u8>, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.overflow || self.shed {
            return;
        }
        if sink.len() + bytes.len() > self.limit {
            // Past the limit: keep reading to the end marker, but store nothing more, and free
            // what was stored: the message will be refused.
            self.overflow = true;
            sink.clear();
            sink.shrink_to_fit();
            return;
        }
        sink.extend_from_slice(bytes);
    }

    /// Consumes input up to and including the end marker.
    pub fn feed(&mut self, input: &[u8], sink: &mut Vec<u8>) -> Fed {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Mid => {
                    // Fast path: copy the run up to the next byte that matters.
                    let rest = &input[i..];
                    let run = rest
                        .iter()
                        .position(|&c| c == b'\r' || c == b'\n' || c == 0)
                        .unwrap_or(rest.len());
                    if run > 0 {
                        self.emit(sink, &rest[..run]);
                        i += run;
                        continue;
                    }
                    self.mid_byte(b, sink);
                }
                State::MidCr => match b {
                    b'\n' => {
                        self.emit(sink, b"\r\n");
                        self.state = State::LineStart { crlf: true };
                    }
                    b'\r' => {
                        // The first CR was bare; this one may still be followed by LF.
                        self.bare_cr(sink);
                        self.state = State::MidCr;
                    }
                    _ => {
                        self.bare_cr(sink);
                        self.line_start_byte(b, sink);
                    }
                },
                State::LineStart { .. } => self.line_start_byte(b, sink),
                State::Dot { crlf } => {
                    if b == b'\r' {
                        self.state = State::DotCr { crlf };
                    } else {
                        // The leading dot was stuffing: drop it, keep the rest of the line.
                        self.mid_byte(b, sink);
                    }
                }
                State::DotCr { crlf } => {
                    if b == b'\n' {
                        if crlf {
                            return Fed {
                                consumed: i + 1,
                                done: true,
                            };
                        }
                        // "." CRLF after a bare LF: an empty line, not the end.
                        self.emit(sink, b"\r\n");
                        self.state = State::LineStart { crlf: true };
                    } else {
                        // "." then a bare CR: the dot was stuffing, the CR ends the line.
                        self.bare_cr(sink);
                        self.line_start_byte(b, sink);
                    }
                }
            }
            i += 1;
        }
        Fed {
            consumed: input.len(),
            done: false,
        }
    }

    fn line_start_byte(&mut self, b: u8, sink: &mut Vec<u8>) {
        match (b, self.state) {
            (b'.', State::LineStart { crlf }) => self.state = State::Dot { crlf },
            _ => self.mid_byte(b, sink),
        }
    }

    fn mid_byte(&mut self, b: u8, sink: &mut Vec<u8>) {
        match b {
            b'\r' => self.state = State::MidCr,
            b'\n' => {
                self.bare_newline = true;
                self.emit(sink, b"\r\n");
                self.state = State::LineStart { crlf: false };
            }
            other => {
                if other == 0 {
                    self.nul = true;
                }
                self.emit(sink, &[other]);
                self.state = State::Mid;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(input: &[u8], limit: usize) -> (Vec<u8>, Fed, DataReader) {
        let mut r = DataReader::new(limit);
        let mut sink = Vec::new();
        let fed = r.feed(input, &mut sink);
        (sink, fed, r)
    }

    #[test]
    fn unstuffs_and_stops_at_end_marker() {
        let (msg, fed, _) = read_all(b"a\r\n..b\r\n.\r\nQUIT\r\n", 1000);
        assert_eq!(msg, b"a\r\n.b\r\n");
        assert!(fed.done);
        assert_eq!(fed.consumed, 11);
    }

    #[test]
    fn empty_message() {
        let (msg, fed, _) = read_all(b".\r\n", 1000);
        assert!(msg.is_empty() && fed.done && fed.consumed == 3);
    }

    #[test]
    fn bare_lf_is_normalized_and_never_ends_data() {
        // SMTP smuggling: "\n.\n" and "\n.\r\n" must not terminate.
        let (msg, fed, r) = read_all(b"a\n.\nMAIL FROM:<x@y>\n\n.\r\nb\r\n.\r\n", 1000);
        assert!(fed.done);
        assert!(r.saw_bare_newline());
        assert_eq!(msg, b"a\r\n\r\nMAIL FROM:<x@y>\r\n\r\n\r\nb\r\n");
    }

    #[test]
    fn bare_cr_is_normalized_and_never_ends_data() {
        // SMTP smuggling with CR: "\r.\r" and "\r.\r\n" must not terminate, and no bare CR
        // is relayed (upstream could take "CR . CR" as the end).
        let (msg, fed, r) = read_all(b"a\r.\rMAIL FROM:<x@y>\r\r\n.\rb\r\n.\r\n", 1000);
        assert!(fed.done);
        assert!(r.saw_bare_newline());
        assert_eq!(msg, b"a\r\n\r\nMAIL FROM:<x@y>\r\n\r\n\r\nb\r\n");
        let (msg, fed, _) = read_all(b"x\r\r.\r\ny\r\n.\r\n", 1000);
        assert!(fed.done);
        assert_eq!(msg, b"x\r\n\r\n\r\ny\r\n");
    }

    #[test]
    fn nul_is_reported() {
        let (_, fed, r) = read_all(b"a\0b\r\n.\r\n", 1000);
        assert!(fed.done && r.saw_nul());
    }

    #[test]
    fn over_limit_is_counted_and_discarded() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\r\n.\r\n");
        let (msg, fed, r) = read_all(&input, 1024);
        assert!(fed.done && r.overflowed());
        assert!(msg.is_empty());
        assert_eq!(r.size(), 5002);
    }

    /// Dot-stuffs `content` (lines joined by CRLF) the way the relay's own upstream client
    /// does, in one piece: the reader must undo exactly what the client writes.
    fn stuff(content: &[u8]) -> Vec<u8> {
        crate::upstream::stuffed_chunks(content, usize::MAX).concat()
    }

    fn crlf_content() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'a'), Just(0xc3u8), Just(b' ')],
                0..20
            ),],
            0..20,
        )
        .prop_map(|lines| {
            let mut out = Vec::new();
            for l in lines {
                out.extend_from_slice(&l);
                out.extend_from_slice(b"\r\n");
            }
            out
        })
    }

    proptest! {
        /// stuff -> read gives back the content, however the input is split into reads.
        #[test]
        fn roundtrip_any_split(content in crlf_content(), splits in proptest::collection::vec(0usize..64, 0..10)) {
            let wire = stuff(&content);
            let mut r = DataReader::new(1 << 20);
            let mut sink = Vec::new();
            let mut pos = 0;
            let mut done = false;
            let mut cuts: Vec<usize> = splits.iter().scan(0, |acc, s| { *acc += s; Some(*acc) }).filter(|&c| c < wire.len()).collect();
            cuts.push(wire.len());
            for cut in cuts {
                if cut < pos || done { continue; }
                let fed = r.feed(&wire[pos..cut], &mut sink);
                pos += fed.consumed;
                done = fed.done;
            }
            prop_assert!(done);
            prop_assert_eq!(pos, wire.len());
            prop_assert_eq!(sink, content);
        }

        /// Arbitrary bytes: bounded sink, and the output has no line that a CRLF.CRLF upstream
        /// could take as an end marker before our end.
        #[test]
        fn arbitrary_input_is_bounded_and_unsmuggled(input in proptest::collection::vec(any::<u8>(), 0..4000), limit in 16usize..2048) {
            let mut r = DataReader::new(limit);
            let mut sink = Vec::new();
            let fed = r.feed(&input, &mut sink);
            prop_assert!(sink.len() <= limit);
            prop_assert!(fed.consumed <= input.len());
            if !r.overflowed() {
                // every LF in the output is preceded by CR, every CR followed by LF
                for (i, &b) in sink.iter().enumerate() {
                    if b == b'\n' { prop_assert!(i > 0 && sink[i-1] == b'\r'); }
                    if b == b'\r' { prop_assert_eq!(sink.get(i + 1), Some(&b'\n')); }
                }
            }
        }
    }
}
