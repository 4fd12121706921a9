//! Reading one application command: tag, name, arguments and literals, within the limits,
//! answering continuation requests and refusing bad input without losing sync with the client.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::{Conn, Line};
use super::lexer::{Item, Lexer, LiteralMarker, is_valid_tag};
use super::skip::{marker_of, refuse_literal, resync};
use super::write::reply;
use crate::error::Error;
use crate::outcome::Reason;

/// The limits a command is read under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_line: usize,
    pub max_inline_literal: usize,
    pub max_command: usize,
    pub max_append: u64,
    /// For the rest of a command once its first line arrived.
    pub io_timeout: Duration,
}

/// Text of a command up to a literal (marker excluded), and that literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub text: Vec<u8>,
    pub literal: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCommand {
    pub tag: Vec<u8>,
    /// Upper-cased command name.
    pub name: Vec<u8>,
    /// Upper-cased sub-command of UID.
    pub uid_sub: Option<Vec<u8>>,
    /// Where the command name sits in `segments[0].text`.
    pub name_span: std::ops::Range<usize>,
    pub segments: Vec<Segment>,
    /// Arguments after the name (and UID sub-command), literals included.
    pub items: Vec<Item>,
}

impl AppCommand {
    pub fn tag_str(&self) -> String {
        String::from_utf8_lossy(&self.tag).into_owned()
    }
}

/// How the proxy answers a command it refuses before reading its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `NO` or `BAD`.
    pub status: &'static str,
    /// Response text, response code included (`[NOPERM] ...`).
    pub text: String,
    /// Metrics/audit reason.
    pub reason: Reason,
}

#[derive(Debug)]
pub enum Read {
    Command(AppCommand),
    /// An APPEND whose message literal comes next (announced by `marker`, not yet read).
    AppendMessage(AppCommand, LiteralMarker),
    /// Refused and answered; the connection is in sync again.
    Rejected(Reason),
    /// Answered with `* BYE`: the connection must close (a non-synchronizing literal too
    /// large to skip).
    Close(Reason),
}

/// Reads the rest of a command whose first line is `first`. `precheck` sees the upper-cased
/// name and UID sub-command before any literal is accepted.
pub async fn read_command<S, F>(
    conn: &mut Conn<S>,
    first: Line,
    limits: &Limits,
    precheck: F,
) -> Result<Read, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&[u8], Option<&[u8]>) -> Option<Refusal>,
{
    let line = match first {
        Line::TooLong { tail } => {
            conn.write(b"* BAD [TOOBIG] Command line too long\r\n")
                .await?;
            return resync(conn, marker_of(&tail), limits, Reason::LineTooLong).await;
        }
        Line::Complete(line) => line,
    };
    let tag_end = line.iter().position(|&c| c == b' ').unwrap_or(line.len());
    let tag = &line[..tag_end];
    if !is_valid_tag(tag) {
        let msg: &[u8] = if line.is_empty() {
            b"* BAD Empty command line\r\n"
        } else {
            b"* BAD Invalid tag\r\n"
        };
        conn.write(msg).await?;
        return resync(conn, marker_of(&line), limits, Reason::BadTag).await;
    }
    let tag = tag.to_vec();
    let (name_span, name) = match word(&line, tag_end + 1) {
        Some(w) => w,
        None => {
            reply(conn, &tag, "BAD", "Missing command").await?;
            return resync(conn, marker_of(&line), limits, Reason::Syntax).await;
        }
    };
    let mut rest_from = name_span.end;
    let uid_sub = if name == b"UID" {
        match word(&line, name_span.end + 1) {
            Some((span, sub)) => {
                rest_from = span.end;
                Some(sub)
            }
            None => None,
        }
    } else {
        None
    };
    if let Some(refusal) = precheck(&name, uid_sub.as_deref()) {
        reply(conn, &tag, refusal.status, &refusal.text).await?;
        return resync(conn, marker_of(&line), limits, refusal.reason).await;
    }

    let mut lexer = Lexer::new();
    let mut segments: Vec<Segment> = Vec::new();
    let mut total = line.len();
    let mut text = line;
    let mut lex_from = rest_from;
    // `Some(marker)`: an APPEND whose message literal the caller streams.
    let append = loop {
        let marker = match lexer.feed_line(&text[lex_from..]) {
            Ok(m) => m.map(|m| LiteralMarker {
                offset: m.offset + lex_from,
                ..m
            }),
            Err(e) => {
                reply(conn, &tag, "BAD", e.message()).await?;
                return resync(conn, marker_of(&text), limits, Reason::Syntax).await;
            }
        };
        let Some(marker) = marker else {
            segments.push(Segment {
                text,
                literal: None,
            });
            break None;
        };
        text.truncate(marker.offset);
        let is_append_message = name == b"APPEND" && lexer.top_len() >= 1 && lexer.depth() == 0;
        if is_append_message {
            if marker.len > limits.max_append {
                return refuse_literal(
                    conn,
                    &tag,
                    marker,
                    "[TOOBIG] Message exceeds the size limit",
                    limits,
                )
                .await;
            }
            segments.push(Segment {
                text,
                literal: None,
            });
            break Some(marker);
        }
        let fits = usize::try_from(marker.len)
            .ok()
            .filter(|&n| n <= limits.max_inline_literal && total + n <= limits.max_command);
        let Some(len) = fits else {
            return refuse_literal(conn, &tag, marker, "[TOOBIG] Literal too large", limits).await;
        };
        if marker.synchronizing {
            conn.write(b"+ Ready for literal data\r\n").await?;
            conn.flush().await?;
        }
        let data = conn
            .read_exact_bytes(len, limits.io_timeout, "reading a literal")
            .await?;
        total += len;
        lexer.feed_literal(data.clone());
        segments.push(Segment {
            text,
            literal: Some(data),
        });
        match conn
            .read_line(limits.max_line, limits.io_timeout, "reading a command")
            .await?
        {
            Line::Complete(next) => {
                total += next.len();
                if total > limits.max_command {
                    reply(conn, &tag, "BAD", "[TOOBIG] Command too long").await?;
                    return resync(conn, marker_of(&next), limits, Reason::CommandTooLong).await;
                }
                text = next;
                lex_from = 0;
            }
            Line::TooLong { tail } => {
                reply(conn, &tag, "BAD", "[TOOBIG] Command line too long").await?;
                return resync(conn, marker_of(&tail), limits, Reason::LineTooLong).await;
            }
        }
    };
    let items = match append {
        // The items so far; the message literal is not part of them.
        Some(_) => lexer.top().to_vec(),
        None => match lexer.finish() {
            Ok(items) => items,
            Err(e) => {
                reply(conn, &tag, "BAD", e.message()).await?;
                return Ok(Read::Rejected(Reason::Syntax));
            }
        },
    };
    let command = AppCommand {
        tag,
        name,
        uid_sub,
        name_span,
        segments,
        items,
    };
    Ok(match append {
        Some(marker) => Read::AppendMessage(command, marker),
        None => Read::Command(command),
    })
}

/// The atom starting at `from`, upper-cased, and its span.
fn word(line: &[u8], from: usize) -> Option<(std::ops::Range<usize>, Vec<u8>)> {
    if from >= line.len() {
        return None;
    }
    let len = line[from..]
        .iter()
        .position(|&c| c == b' ')
        .unwrap_or(line.len() - from);
    let w = &line[from..from + len];
    if w.is_empty()
        || !w
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
    {
        return None;
    }
    Some((from..from + len, w.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Side;
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    const LIMITS: Limits = Limits {
        max_line: 200,
        max_inline_literal: 100,
        max_command: 400,
        max_append: 300,
        io_timeout: Duration::from_secs(5),
    };

    /// Pieces an adversarial client sends: commands, literals of any announced size, junk.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"a1 NOOP\r\n".to_vec()),
            Just(b"a2 SELECT {5}\r\n".to_vec()),
            Just(b"a3 APPEND INBOX {250+}\r\n".to_vec()),
            Just(b"a4 LOGIN {4294967296+}\r\n".to_vec()),
            Just(b"a5 LOGIN \"x\" {99999}\r\n".to_vec()),
            Just(b"a6 LOGIN (\"x\r\n".to_vec()),
            Just(b"+bad NOOP\r\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::collection::vec(
                prop_oneof![Just(b'x'), Just(b'{'), Just(b'}'), Just(b'\n'), Just(b'"')],
                0..300
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Any byte stream: the reader answers or closes, never panics, never grows its
        /// buffer past the line bound, and stops at the end of input.
        #[test]
        fn any_input_is_answered_within_bounds(pieces in proptest::collection::vec(piece(), 1..12)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (near, mut far) = tokio::io::duplex(1 << 20);
                let input: Vec<u8> = pieces.concat();
                far.write_all(&input).await.unwrap();
                far.shutdown().await.unwrap();
                let mut conn = Conn::new(near, Side::App, 64, LIMITS.max_line + 2, 4096, LIMITS.io_timeout);
                let mut commands = 0;
                loop {
                    let first = match conn.read_line(LIMITS.max_line, LIMITS.io_timeout, "test").await {
                        Ok(line) => line,
                        Err(_) => break,
                    };
                    match read_command(&mut conn, first, &LIMITS, |_, _| None).await {
                        Ok(Read::Close(_)) | Err(_) => break,
                        Ok(Read::AppendMessage(_, m)) => {
                            prop_assert!(m.len <= LIMITS.max_append);
                            if conn.discard(m.len, LIMITS.io_timeout, "test").await.is_err() {
                                break;
                            }
                        }
                        Ok(Read::Command(c)) => {
                            let held: usize = c.segments.iter().map(|s| s.text.len() + s.literal.as_ref().map_or(0, Vec::len)).sum();
                            prop_assert!(held <= LIMITS.max_command + LIMITS.max_line);
                        }
                        Ok(Read::Rejected(_)) => {}
                    }
                    prop_assert!(conn.read_capacity() <= LIMITS.max_line + 2);
                    commands += 1;
                    prop_assert!(commands <= input.len() + 1);
                }
                Ok(())
            })?;
        }
    }

    #[tokio::test]
    async fn literals_inside_a_command_are_read_after_a_continuation() {
        let (near, mut far) = tokio::io::duplex(4096);
        let mut conn = Conn::new(
            near,
            Side::App,
            64,
            LIMITS.max_line + 2,
            4096,
            LIMITS.io_timeout,
        );
        far.write_all(b"t1 RENAME {3}\r\n").await.unwrap();
        let first = conn
            .read_line(200, LIMITS.io_timeout, "test")
            .await
            .unwrap();
        let reader = tokio::spawn(async move {
            let read = read_command(&mut conn, first, &LIMITS, |_, _| None)
                .await
                .unwrap();
            conn.flush().await.unwrap();
            read
        });
        let mut cont = [0u8; 26];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut cont)
            .await
            .unwrap();
        assert_eq!(&cont, b"+ Ready for literal data\r\n");
        far.write_all(b"a b \"c d\"\r\n").await.unwrap();
        let Read::Command(cmd) = reader.await.unwrap() else {
            panic!("not a command")
        };
        assert_eq!(cmd.name, b"RENAME");
        assert_eq!(
            cmd.items,
            vec![Item::Str(b"a b".to_vec()), Item::Str(b"c d".to_vec())]
        );
        assert_eq!(cmd.segments.len(), 2);
        assert_eq!(cmd.segments[0].text, b"t1 RENAME ");
    }
}
