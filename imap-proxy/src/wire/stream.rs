//! Streaming a response the proxy does not look into (FETCH, SEARCH, EXISTS...) from
//! upstream to the application: bytes move in the chunks they arrive in, and only line ends
//! and literal lengths are tracked, so a 20 MiB body never sits in memory.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::{Conn, push_tail};
use super::lexer::trailing_literal;
use crate::error::Error;

/// Copies one complete response (its lines and the literals they announce).
pub async fn stream_response<A, B>(
    from: &mut Conn<A>,
    to: &mut Conn<B>,
    timeout: Duration,
) -> Result<(), Error>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut tail: Vec<u8> = Vec::with_capacity(64);
    loop {
        if from.buffered().is_empty() {
            from.fill_within(timeout, "reading a response").await?;
        }
        let data = from.buffered();
        match memchr::memchr(b'\n', data) {
            Some(pos) => {
                let chunk_len = pos + 1;
                push_tail(&mut tail, &data[..chunk_len]);
                to.write(&from.buffered()[..chunk_len]).await?;
                from.consume(chunk_len);
                match trailing_literal(&tail) {
                    Some(len) => {
                        copy_exact(from, to, len, timeout, "reading a literal").await?;
                        tail.clear();
                    }
                    None => return Ok(()),
                }
            }
            None => {
                let n = data.len();
                push_tail(&mut tail, data);
                to.write(&from.buffered()[..n]).await?;
                from.consume(n);
            }
        }
    }
}

/// Copies exactly `n` bytes, reading with a bounded wait.
pub async fn copy_exact<A, B>(
    from: &mut Conn<A>,
    to: &mut Conn<B>,
    mut n: u64,
    timeout: Duration,
    during: &'static str,
) -> Result<(), Error>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    while n > 0 {
        if from.buffered().is_empty() {
            n -= to.write_from(from, n, timeout, during).await? as u64;
            continue;
        }
        let take = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(from.buffered().len());
        to.write(&from.buffered()[..take]).await?;
        from.consume(take);
        n -= take as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Side;
    use crate::scrub::Scrubber;
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const T: Duration = Duration::from_secs(10);

    /// A response: lines, each optionally followed by a literal (whose bytes may contain
    /// anything, line ends and fake literal announcements included).
    fn response() -> impl Strategy<Value = Vec<u8>> {
        let literal = proptest::collection::vec(
            prop_oneof![any::<u8>(), Just(b'\n'), Just(b'{'), Just(b'}')],
            0..3000,
        );
        let part = ("[ -z]{0,40}", proptest::option::of(literal));
        proptest::collection::vec(part, 1..4).prop_map(|parts| {
            let mut out = b"* 1 FETCH (".to_vec();
            for (text, literal) in parts {
                out.extend_from_slice(text.replace(['{', '}'], "").as_bytes());
                if let Some(lit) = literal {
                    out.extend_from_slice(format!(" {{{}}}\r\n", lit.len()).as_bytes());
                    out.extend_from_slice(&lit);
                }
            }
            out.extend_from_slice(b")\r\n");
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the chunking, each call forwards exactly one response, byte for byte,
        /// and leaves the next one untouched.
        #[test]
        fn responses_stream_through_exactly(responses in proptest::collection::vec(response(), 1..4), chunk in 1usize..700) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (up_near, mut up_far) = tokio::io::duplex(1 << 16);
                let (app_near, mut app_far) = tokio::io::duplex(1 << 22);
                let all: Vec<u8> = responses.concat();
                let feeder = tokio::spawn(async move {
                    for piece in all.chunks(chunk) {
                        up_far.write_all(piece).await.unwrap();
                    }
                    up_far
                });
                let mut from = Conn::new(up_near, Side::Upstream, 64, 1024, 4096, T);
                let mut to = Conn::new(app_near, Side::App, 64, 1024, 4096, T);
                for expected in &responses {
                    stream_response(&mut from, &mut to, T).await.unwrap();
                    to.flush().await.unwrap();
                    let mut got = vec![0u8; expected.len()];
                    app_far.read_exact(&mut got).await.unwrap();
                    prop_assert_eq!(&got, expected);
                }
                prop_assert!(from.buffered().is_empty());
                drop(feeder.await.unwrap());
                Ok(())
            })?;
        }

        /// A literal read straight into the scrubbing write buffer, in whatever pieces it
        /// arrives: a secret split across two reads is still replaced, and nothing else
        /// changes.
        #[test]
        fn literals_are_scrubbed_across_reads(
            parts in proptest::collection::vec(("[a-z \r\n]{0,300}", any::<bool>()), 1..12),
            chunk in 1usize..200,
        ) {
            let password = b"s3cretPW";
            let scrubber = Scrubber::for_password("user", password);
            let mut literal = Vec::new();
            for (text, secret) in &parts {
                literal.extend_from_slice(text.as_bytes());
                if *secret {
                    literal.extend_from_slice(password);
                }
            }
            let mut sent = format!("* 1 FETCH (BODY[] {{{}}}\r\n", literal.len()).into_bytes();
            sent.extend_from_slice(&literal);
            sent.extend_from_slice(b")\r\n");
            let expected = scrubber.scrubbed(&sent);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (up_near, mut up_far) = tokio::io::duplex(1 << 16);
                let (app_near, mut app_far) = tokio::io::duplex(1 << 22);
                let wire = sent.clone();
                let feeder = tokio::spawn(async move {
                    for piece in wire.chunks(chunk) {
                        up_far.write_all(piece).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                    up_far
                });
                let mut from = Conn::new(up_near, Side::Upstream, 64, 1024, 4096, T);
                // A small write buffer: every read ends a write, so secrets straddle writes.
                let mut to = Conn::new(app_near, Side::App, 64, 1024, 128, T);
                to.set_scrubber(Scrubber::for_password("user", password));
                stream_response(&mut from, &mut to, T).await.unwrap();
                to.flush().await.unwrap();
                let mut got = vec![0u8; sent.len()];
                app_far.read_exact(&mut got).await.unwrap();
                prop_assert_eq!(&got, &expected);
                prop_assert!(memchr::memmem::find(&got, password).is_none());
                drop(feeder.await.unwrap());
                Ok(())
            })?;
        }
    }
}
