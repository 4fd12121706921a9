//! Staying in sync with the application after a refusal: the rest of a refused command is
//! skipped, literals included, or the connection closes when a literal is too large to skip.

use tokio::io::{AsyncRead, AsyncWrite};

use super::command::{Limits, Read};
use super::conn::{Conn, Line};
use super::lexer::{LiteralMarker, trailing_literal};
use super::write::reply;
use crate::error::Error;
use crate::outcome::Reason;

/// A literal the proxy will not take. A synchronizing one is simply not continued; a
/// non-synchronizing one is already on its way, so the connection closes unless it is small
/// enough to skip.
pub(super) async fn refuse_literal<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    tag: &[u8],
    marker: LiteralMarker,
    text: &str,
    limits: &Limits,
) -> Result<Read, Error> {
    if marker.synchronizing {
        reply(conn, tag, "NO", text).await?;
        return Ok(Read::Rejected(Reason::LiteralTooLarge));
    }
    if marker.len <= skip_limit(limits) {
        reply(conn, tag, "NO", text).await?;
        return resync(conn, Some(marker), limits, Reason::LiteralTooLarge).await;
    }
    conn.write(b"* BYE [TOOBIG] Non-synchronizing literal too large\r\n")
        .await?;
    Ok(Read::Close(Reason::LiteralTooLarge))
}

/// Largest non-synchronizing literal skipped (read and dropped) to stay in sync.
fn skip_limit(limits: &Limits) -> u64 {
    limits.max_append.max(limits.max_inline_literal as u64)
}

/// After a refusal: skips the rest of the command. A synchronizing literal was never
/// continued, so the client abandons the command; a non-synchronizing one is read and dropped,
/// and so is the line after it.
pub async fn resync<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    mut marker: Option<LiteralMarker>,
    limits: &Limits,
    reason: Reason,
) -> Result<Read, Error> {
    while let Some(m) = marker {
        if m.synchronizing {
            break;
        }
        if m.len > skip_limit(limits) {
            conn.write(b"* BYE [TOOBIG] Non-synchronizing literal too large\r\n")
                .await?;
            return Ok(Read::Close(reason));
        }
        conn.discard(m.len, limits.io_timeout, "skipping a refused literal")
            .await?;
        marker = match conn
            .read_line(
                limits.max_line,
                limits.io_timeout,
                "skipping a refused command",
            )
            .await?
        {
            Line::Complete(line) => marker_of(&line),
            Line::TooLong { tail } => marker_of(&tail),
        };
    }
    Ok(Read::Rejected(reason))
}

/// The literal announced at the end of raw line text, if any.
pub fn marker_of(line: &[u8]) -> Option<LiteralMarker> {
    let len = trailing_literal(line)?;
    let synchronizing = !line.ends_with(b"+}");
    Some(LiteralMarker {
        len,
        synchronizing,
        offset: line.iter().rposition(|&c| c == b'{').unwrap_or(0),
    })
}
