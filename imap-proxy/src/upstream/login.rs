//! The login with the decrypted credential: AUTHENTICATE PLAIN (SASL-IR when offered) or
//! LOGIN with literals, and the reading of responses until the tagged one.
//!
//! Once the secret went out, nothing upstream says reaches an error, a log line or the
//! application: a server may echo the command it got (`NO [ALERT] you sent: ...`). Only the
//! response code's class survives, as a [`LoginRefusal`].

use base64::Engine as _;
use mailcred_core::MailPassword;
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

use super::{LoginLimits, UpstreamIo};
use crate::error::Error;
use crate::wire::conn::{Conn, Line};
use crate::wire::response::{
    capability_code, parse_caps, printable, response_code, strip_prefix_ci,
};

/// Whether upstream text may be shown: only before the secret was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    BeforeSecret,
    AfterSecret,
    /// After the secret, for the one-off login check (verify.rs): the tagged text is kept
    /// raw in [`Done::unscrubbed`], for the caller to scrub before anyone sees it.
    Check,
}

pub(super) async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    limits: LoginLimits,
) -> Result<(), Error> {
    let line = read_simple_line(conn, limits).await?;
    if line.starts_with(b"* OK") {
        Ok(())
    } else {
        Err(Error::UpstreamProtocol(format!(
            "unexpected greeting: {}",
            printable(&line)
        )))
    }
}

/// The end of a command in the login phase.
pub(super) struct Done {
    /// Upper-cased `OK`, `NO` or `BAD`.
    pub status: String,
    /// The response code's atom, upper-cased (`AUTHENTICATIONFAILED`).
    pub code: Option<String>,
    /// The human-readable text; empty after the secret was sent.
    pub text: String,
    /// [`Phase::Check`] only: the tagged response's raw text, which may hold the secret.
    pub unscrubbed: Option<Zeroizing<Vec<u8>>>,
    pub capabilities: Vec<String>,
}

pub(super) enum LoginStep {
    Continue,
    Done(Done),
}

pub(super) async fn read_until_tagged<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    tag: &[u8],
    limits: LoginLimits,
    phase: Phase,
) -> Result<Done, Error> {
    match read_step(conn, tag, limits, false, phase).await? {
        LoginStep::Done(d) => Ok(d),
        LoginStep::Continue => Err(Error::UpstreamProtocol(
            "unexpected continuation request".into(),
        )),
    }
}

/// Reads responses until the tagged one (or a continuation request, if `continuation_ok`),
/// collecting capabilities from `* CAPABILITY` and `[CAPABILITY ...]`.
pub(super) async fn read_step<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    tag: &[u8],
    limits: LoginLimits,
    continuation_ok: bool,
    phase: Phase,
) -> Result<LoginStep, Error> {
    let mut caps = Vec::new();
    loop {
        let line = read_simple_line(conn, limits).await?;
        if line.starts_with(b"+") {
            if continuation_ok {
                return Ok(LoginStep::Continue);
            }
            return Err(Error::UpstreamProtocol(
                "unexpected continuation request".into(),
            ));
        }
        if let Some(rest) = line.strip_prefix(b"* ") {
            if let Some(list) = strip_prefix_ci(rest, b"CAPABILITY ") {
                caps = parse_caps(list);
            } else if strip_prefix_ci(rest, b"BYE").is_some() {
                return Err(Error::UpstreamProtocol(shown(
                    phase,
                    "server said BYE",
                    &line,
                )));
            }
            continue;
        }
        let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(b" ")) else {
            return Err(Error::UpstreamProtocol(shown(
                phase,
                "unexpected response",
                &line,
            )));
        };
        let (status, text) = match rest.iter().position(|&c| c == b' ') {
            Some(p) => (&rest[..p], &rest[p + 1..]),
            None => (rest, &b""[..]),
        };
        if let Some(code) = capability_code(text) {
            caps = parse_caps(code);
        }
        return Ok(LoginStep::Done(Done {
            status: String::from_utf8_lossy(status).to_ascii_uppercase(),
            code: response_code(text),
            text: match phase {
                Phase::BeforeSecret => printable(text),
                Phase::AfterSecret | Phase::Check => String::new(),
            },
            unscrubbed: (phase == Phase::Check).then(|| Zeroizing::new(text.to_vec())),
            capabilities: caps,
        }));
    }
}

async fn read_simple_line<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    limits: LoginLimits,
) -> Result<Vec<u8>, Error> {
    match conn
        .read_line(limits.max_line, limits.timeout, "logging in upstream")
        .await?
    {
        Line::Complete(line) => Ok(line),
        Line::TooLong { .. } => Err(Error::UpstreamProtocol("response line too long".into())),
    }
}

pub(super) async fn authenticate_plain(
    conn: &mut Conn<UpstreamIo>,
    username: &str,
    password: &MailPassword,
    sasl_ir: bool,
    limits: LoginLimits,
    phase: Phase,
) -> Result<Done, Error> {
    let mut raw = Zeroizing::new(Vec::with_capacity(
        username.len() + password.expose().len() + 2,
    ));
    raw.push(0);
    raw.extend_from_slice(username.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.expose().as_bytes());
    let mut response = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*raw));
    response.push_str("\r\n");
    if sasl_ir {
        conn.write(b"m3 AUTHENTICATE PLAIN ").await?;
        conn.write_secret(response.as_bytes()).await?;
        conn.flush().await?;
    } else {
        conn.write(b"m3 AUTHENTICATE PLAIN\r\n").await?;
        conn.flush().await?;
        match read_step(conn, b"m3", limits, true, phase).await? {
            LoginStep::Done(d) => return Ok(d),
            LoginStep::Continue => {}
        }
        conn.write_secret(response.as_bytes()).await?;
        conn.flush().await?;
    }
    read_until_tagged(conn, b"m3", limits, phase).await
}

/// LOGIN with both arguments as literals: any byte of a password goes through unquoted.
pub(super) async fn login(
    conn: &mut Conn<UpstreamIo>,
    username: &str,
    password: &MailPassword,
    literal_plus: bool,
    limits: LoginLimits,
    phase: Phase,
) -> Result<Done, Error> {
    let user = username.as_bytes();
    let pass = password.expose().as_bytes();
    let plus = if literal_plus { "+" } else { "" };
    conn.write(format!("m3 LOGIN {{{}{plus}}}\r\n", user.len()).as_bytes())
        .await?;
    if !literal_plus {
        conn.flush().await?;
        if let LoginStep::Done(d) = read_step(conn, b"m3", limits, true, phase).await? {
            return Ok(d);
        }
    }
    conn.write(user).await?;
    conn.write(format!(" {{{}{plus}}}\r\n", pass.len()).as_bytes())
        .await?;
    if !literal_plus {
        conn.flush().await?;
        if let LoginStep::Done(d) = read_step(conn, b"m3", limits, true, phase).await? {
            return Ok(d);
        }
    }
    let mut secret = Zeroizing::new(Vec::with_capacity(pass.len() + 2));
    secret.extend_from_slice(pass);
    secret.extend_from_slice(b"\r\n");
    conn.write_secret(&secret).await?;
    conn.flush().await?;
    read_until_tagged(conn, b"m3", limits, phase).await
}

/// An error description with upstream's line only while no secret was sent.
fn shown(phase: Phase, what: &str, line: &[u8]) -> String {
    match phase {
        Phase::BeforeSecret => format!("{what}: {}", printable(line)),
        Phase::AfterSecret | Phase::Check => {
            format!("{what} during login (its text is not shown: it may echo the credential)")
        }
    }
}
