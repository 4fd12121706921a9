//! Opening an authenticated upstream session: TCP (TCP_NODELAY), implicit TLS or STARTTLS
//! (verified), EHLO, then AUTH (sasl.rs): PLAIN or LOGIN with a password, XOAUTH2 or
//! OAUTHBEARER with an OAuth access token.
//!
//! STARTTLS: bytes the server sent after its 220 and before the handshake are an injection
//! (CVE-2011-0411 class): they would be read as replies from inside TLS. The connection is
//! refused, not drained.

use std::sync::Arc;
use std::time::Duration;

use mailcred_core::crd::TlsMode;
use mailcred_core::upstream_auth::OAuthLogin;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

use super::client::Conn;
use super::errors::{Scrubber, UpstreamError};
use super::sasl;

/// Any stream the client runs over once the session is secured.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

pub type Io = Box<dyn Stream>;

/// Where and how to connect, for one decrypted credential.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub mode: TlsMode,
    /// `None` only for `tls: none` with `insecure: true`.
    pub tls: Option<Arc<ClientConfig>>,
    pub username: String,
    pub auth: TargetAuth,
    pub hello: String,
    /// Bound on each step (connect, handshake, each reply).
    pub timeout: Duration,
    pub scrubber: Scrubber,
}

/// What AUTH sends.
pub enum TargetAuth {
    Password(Zeroizing<String>),
    /// Tokens from the credential's one shared source (no fetch per connection beyond its
    /// cache lookup; pooled connections stay authenticated).
    OAuth(OAuthLogin),
}

/// Connects, secures and authenticates.
pub async fn connect(target: &Target) -> Result<Conn<Io>, UpstreamError> {
    match &target.auth {
        TargetAuth::Password(password) => {
            let (mut conn, capabilities) = open(target).await?;
            sasl::password(&mut conn, &capabilities, &target.username, password).await?;
            Ok(conn)
        }
        TargetAuth::OAuth(login) => sasl::oauth(target, login).await,
    }
}

/// Connects, secures and says EHLO: the session ready for AUTH, with the extensions offered
/// over TLS.
pub(super) async fn open(target: &Target) -> Result<(Conn<Io>, Vec<String>), UpstreamError> {
    let connect = TcpStream::connect((target.host.as_str(), target.port));
    let tcp = tokio::time::timeout(target.timeout, connect)
        .await
        .map_err(|_| UpstreamError::Timeout)?
        .map_err(UpstreamError::Connect)?;
    tcp.set_nodelay(true).map_err(UpstreamError::Connect)?;
    let (mut conn, capabilities) = match (target.mode, &target.tls) {
        (TlsMode::Implicit, Some(tls)) => {
            let stream = handshake(target, tls, tcp).await?;
            let mut conn = Conn::new(stream, target.timeout);
            greeting(&mut conn).await?;
            let caps = ehlo(&mut conn, &target.hello).await?;
            (conn, caps)
        }
        (TlsMode::Starttls, Some(tls)) => {
            let mut plain = Conn::new(tcp, target.timeout);
            greeting(&mut plain).await?;
            let caps = ehlo(&mut plain, &target.hello).await?;
            if !caps.iter().any(|c| c == "STARTTLS") {
                return Err(UpstreamError::NoStartTls);
            }
            let reply = plain.command(b"STARTTLS").await?;
            if reply.code != 220 {
                return Err(UpstreamError::SessionRefused { code: reply.code });
            }
            if plain.buffered() > 0 {
                return Err(UpstreamError::PreTlsInjection(plain.buffered()));
            }
            let stream = handshake(target, tls, plain.into_inner()).await?;
            let mut conn = Conn::new(stream, target.timeout);
            // What the server offered before TLS is forgotten (RFC 3207 4.2).
            let caps = ehlo(&mut conn, &target.hello).await?;
            (conn, caps)
        }
        // Only reachable with `tls: none` + `insecure: true` (checked when the target is built).
        _ => {
            let mut conn = Conn::new(Box::new(tcp) as Io, target.timeout);
            greeting(&mut conn).await?;
            let caps = ehlo(&mut conn, &target.hello).await?;
            (conn, caps)
        }
    };
    conn.set_capabilities(&capabilities);
    Ok((conn, capabilities))
}

async fn handshake(
    target: &Target,
    tls: &Arc<ClientConfig>,
    tcp: TcpStream,
) -> Result<Io, UpstreamError> {
    let name = mailcred_core::tls::server_name(&target.host).map_err(|e| {
        UpstreamError::Tls(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            e.to_string(),
        ))
    })?;
    let connect = TlsConnector::from(tls.clone()).connect(name, tcp);
    let stream = tokio::time::timeout(target.timeout, connect)
        .await
        .map_err(|_| UpstreamError::Timeout)?
        .map_err(UpstreamError::Tls)?;
    Ok(Box::new(stream))
}

async fn greeting<S: Stream>(conn: &mut Conn<S>) -> Result<(), UpstreamError> {
    let reply = conn.read_reply().await?;
    if reply.code != 220 {
        return Err(UpstreamError::SessionRefused { code: reply.code });
    }
    Ok(())
}

/// Sends EHLO; returns the extension keywords and parameters, uppercased.
async fn ehlo<S: Stream>(conn: &mut Conn<S>, hello: &str) -> Result<Vec<String>, UpstreamError> {
    let reply = conn.command(format!("EHLO {hello}").as_bytes()).await?;
    if reply.code != 250 {
        return Err(UpstreamError::SessionRefused { code: reply.code });
    }
    Ok(reply
        .lines
        .iter()
        .skip(1)
        .map(|l| l.trim().to_ascii_uppercase())
        .collect())
}
