//! The upstream side: TCP, verified TLS (implicit or STARTTLS), and the login with the
//! decrypted credential. Written here rather than with async-imap: async-imap logs every
//! command it encodes at trace level (LOGIN's password included) and its `into_inner` drops
//! read-ahead bytes, and the relay needs the raw stream with nothing lost.

mod authenticate;
mod login;
mod tls;
mod verify;

use std::time::Duration;

use mailcred_core::crd::{TlsMode, UpstreamEndpoint};
use mailcred_core::{MailPassword, UpstreamAuth};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use self::login::{Phase, authenticate_plain, greeting, login, read_until_tagged};
use self::tls::tls_handshake;
pub use self::verify::verify_login;
use crate::error::{Error, LoginRefusal, Side};
use crate::scrub::Scrubber;
use crate::wire::conn::Conn;

/// Anything the relay can read and write.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type UpstreamIo = Box<dyn Io>;

/// Read buffer of the upstream connection: FETCH data passes through it in chunks this big.
pub const UPSTREAM_READ_BUF: usize = 32 * 1024;
const UPSTREAM_WRITE_BUF: usize = 8 * 1024;

/// A logged-in upstream connection.
pub struct Upstream {
    pub conn: Conn<UpstreamIo>,
    /// Upper-cased capability names after login.
    pub capabilities: Vec<String>,
    /// Every form in which the secret (password, or each access token tried) went upstream.
    pub scrubber: Scrubber,
}

impl Upstream {
    pub fn has(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| c == cap)
    }
}

/// Limits the login phase runs under.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub timeout: Duration,
    pub max_line: usize,
}

/// Connects, secures and logs in. Every failure is one of the `Upstream*` errors (or a
/// timeout, or the token source's error), which the session turns into `NO [UNAVAILABLE]`.
pub async fn connect_and_login(
    endpoint: &UpstreamEndpoint,
    username: &str,
    auth: &UpstreamAuth,
    limits: LoginLimits,
) -> Result<Upstream, Error> {
    match auth {
        UpstreamAuth::Password(password) => {
            let (conn, done) =
                password_login(endpoint, username, password, limits, Phase::AfterSecret).await?;
            let name = format!("{}:{}", endpoint.host, endpoint.port);
            let scrubber = Scrubber::for_password(username, password.expose().as_bytes());
            logged_in(conn, done, &name, username, scrubber, limits).await
        }
        UpstreamAuth::OAuth(oauth) => authenticate::oauth(endpoint, username, oauth, limits).await,
    }
}

/// Opens the connection and logs in with the password as the server's capabilities allow:
/// AUTHENTICATE PLAIN (SASL-IR when offered), else LOGIN unless LOGINDISABLED. The answer is
/// returned as read; one rule for the proxy and the login check (verify.rs).
async fn password_login(
    endpoint: &UpstreamEndpoint,
    username: &str,
    password: &MailPassword,
    limits: LoginLimits,
    phase: Phase,
) -> Result<(Conn<UpstreamIo>, login::Done), Error> {
    let (mut conn, caps) = open(endpoint, limits).await?;
    let has = |c: &str| caps.iter().any(|x| x == c);
    let done = if has("AUTH=PLAIN") {
        authenticate_plain(&mut conn, username, password, has("SASL-IR"), limits, phase).await?
    } else if has("LOGINDISABLED") {
        return Err(Error::UpstreamAuth {
            endpoint: format!("{}:{}", endpoint.host, endpoint.port),
            username: username.to_owned(),
            refusal: LoginRefusal::NoMechanism,
        });
    } else {
        login(
            &mut conn,
            username,
            password,
            has("LITERAL+"),
            limits,
            phase,
        )
        .await?
    };
    Ok((conn, done))
}

/// The end of the login: a refusal (by its class only), or the logged-in connection with
/// its capabilities (asked again when the tagged OK did not carry them).
async fn logged_in(
    mut conn: Conn<UpstreamIo>,
    done: login::Done,
    name: &str,
    username: &str,
    scrubber: Scrubber,
    limits: LoginLimits,
) -> Result<Upstream, Error> {
    if done.status != "OK" {
        // Never `done.text`: it may be the login line echoed back, password included.
        return Err(Error::UpstreamAuth {
            endpoint: name.to_owned(),
            username: username.to_owned(),
            refusal: LoginRefusal::from_response(&done.status, done.code.as_deref()),
        });
    }
    let capabilities = match done.capabilities {
        c if !c.is_empty() => c,
        _ => {
            conn.write(b"m4 CAPABILITY\r\n").await?;
            conn.flush().await?;
            read_until_tagged(&mut conn, b"m4", limits, Phase::AfterSecret)
                .await?
                .capabilities
        }
    };
    Ok(Upstream {
        conn,
        capabilities,
        scrubber,
    })
}

/// TCP, TLS (implicit or STARTTLS), greeting and CAPABILITY: ready for the login.
async fn open(
    endpoint: &UpstreamEndpoint,
    limits: LoginLimits,
) -> Result<(Conn<UpstreamIo>, Vec<String>), Error> {
    let name = format!("{}:{}", endpoint.host, endpoint.port);
    let unreachable = |detail: String| Error::UpstreamUnreachable {
        endpoint: name.clone(),
        detail,
    };
    let tcp = tokio::time::timeout(
        limits.timeout,
        TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
    )
    .await
    .map_err(|_| unreachable(format!("no connection within {:?}", limits.timeout)))?
    .map_err(|e| unreachable(e.to_string()))?;
    tcp.set_nodelay(true)
        .map_err(|e| unreachable(e.to_string()))?;

    let new_conn = |io: UpstreamIo| {
        Conn::new(
            io,
            Side::Upstream,
            UPSTREAM_READ_BUF,
            limits.max_line + 2,
            UPSTREAM_WRITE_BUF,
            limits.timeout,
        )
    };
    let mut conn = match endpoint.tls {
        TlsMode::Implicit => {
            let io = tls_handshake(tcp, endpoint, limits.timeout).await?;
            let mut conn = new_conn(io);
            greeting(&mut conn, limits).await?;
            conn
        }
        TlsMode::Starttls => {
            let mut plain = Conn::new(
                tcp,
                Side::Upstream,
                1024,
                limits.max_line + 2,
                UPSTREAM_WRITE_BUF,
                limits.timeout,
            );
            greeting(&mut plain, limits).await?;
            plain.write(b"m1 STARTTLS\r\n").await?;
            plain.flush().await?;
            let done = read_until_tagged(&mut plain, b"m1", limits, Phase::BeforeSecret).await?;
            if done.status != "OK" {
                return Err(Error::UpstreamTls {
                    endpoint: name,
                    detail: format!("STARTTLS refused: {}", done.text),
                });
            }
            let tcp = plain.into_inner()?;
            let io = tls_handshake(tcp, endpoint, limits.timeout).await?;
            new_conn(io)
        }
        TlsMode::None => {
            if !endpoint.insecure {
                return Err(Error::Config(
                    "tls: none without insecure: true is refused".into(),
                ));
            }
            tracing::warn!(endpoint = %name, "upstream IMAP without TLS (insecure: true in the MailCredential)");
            let mut conn = new_conn(Box::new(tcp));
            greeting(&mut conn, limits).await?;
            conn
        }
    };

    conn.write(b"m2 CAPABILITY\r\n").await?;
    conn.flush().await?;
    let caps = read_until_tagged(&mut conn, b"m2", limits, Phase::BeforeSecret)
        .await?
        .capabilities;

    Ok((conn, caps))
}
