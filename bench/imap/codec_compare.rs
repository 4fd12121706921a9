// Build: a scratch crate with imap-codec = "=2.0.0-alpha.10" and memchr = "2" as dependencies,
// this file as src/main.rs, `cargo run --release` (kept out of the workspace on purpose: the
// proxy does not depend on imap-codec).
// Scratch measurement for the mailcred-imap parser choice: full imap-codec decode of FETCH
// responses vs the light pass-through framing the proxy uses (find LF, read a trailing {n}).
use imap_codec::decode::Decoder;
use imap_codec::ResponseCodec;
use std::time::Instant;

fn trailing_literal(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&c| c == b'{')?;
    std::str::from_utf8(&body[open + 1..]).ok()?.trim_end_matches('+').parse().ok()
}

/// Frames one response and "copies" it (sums bytes), as stream_response does.
fn frame(mut data: &[u8], sink: &mut Vec<u8>) -> usize {
    let start = data.len();
    loop {
        let pos = memchr::memchr(b'\n', data).unwrap();
        std::hint::black_box(&data[..=pos]);
        let lit = trailing_literal(&data[..=pos]);
        data = &data[pos + 1..];
        match lit {
            Some(n) => {
                std::hint::black_box(&data[..n as usize]);
                data = &data[n as usize..];
            }
            None => return start - data.len(),
        }
    }
}

fn main() {
    for (label, body_len, n) in [("50 KiB BODY[]", 50 * 1024, 1000usize), ("FLAGS only", 0, 10_000)] {
        let mut responses = Vec::new();
        for i in 1..=n {
            if body_len > 0 {
                let body: Vec<u8> = (0..body_len).map(|k| b"abcdefghij\r\n"[k % 12]).collect();
                let mut r = format!("* {i} FETCH (UID {i} BODY[] {{{}}}\r\n", body.len()).into_bytes();
                r.extend_from_slice(&body);
                r.extend_from_slice(b")\r\n");
                responses.push(r);
            } else {
                responses.push(format!("* {i} FETCH (UID {i} FLAGS (\\Seen \\Answered))\r\n").into_bytes());
            }
        }
        let total: usize = responses.iter().map(Vec::len).sum();
        let codec = ResponseCodec::default();
        let mut best_codec = f64::MAX;
        let mut best_frame = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for r in &responses {
                let (rest, resp) = codec.decode(r).expect("decodes");
                assert!(rest.is_empty());
                std::hint::black_box(resp);
            }
            best_codec = best_codec.min(t.elapsed().as_secs_f64());
            let mut sink = Vec::with_capacity(total);
            let t = Instant::now();
            for r in &responses {
                let used = frame(r, &mut sink);
                assert_eq!(used, r.len());
            }
            std::hint::black_box(&sink);
            best_frame = best_frame.min(t.elapsed().as_secs_f64());
        }
        let mib = total as f64 / (1024.0 * 1024.0);
        println!(
            "{label}: {n} responses, {mib:.1} MiB: imap-codec decode {:.2} ms ({:.0} MiB/s); pass-through framing {:.2} ms ({:.0} MiB/s); ratio {:.1}x",
            best_codec * 1e3, mib / best_codec, best_frame * 1e3, mib / best_frame, best_codec / best_frame
        );
    }
}
