//! The upstream side: TCP, verified TLS (implicit or STARTTLS), and the login with the
//! decrypted credential. Written here rather than with async-imap: async-imap logs every
//! command it encodes at trace level (LOGIN's password included) and its `into_inner` drops
//! read-ahead bytes, and the relay needs the raw stream with nothing lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use mailcred_core::MailPassword;
use mailcred_core::crd::{TlsMode, UpstreamEndpoint};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

use crate::error::{Error, Side};
use crate::wire::conn::{Conn, Line};

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
}

impl Upstream {
    pub fn has(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| c == cap)
    }
}

/// TLS client configurations, one per distinct CA bundle (system roots under `None`).
#[derive(Default)]
pub struct TlsConfigs {
    cache: Mutex<HashMap<Option<String>, Arc<ClientConfig>>>,
}

/// Distinct CA bundles cached; a sidecar serves one or a few credentials.
const MAX_CACHED_TLS_CONFIGS: usize = 16;

impl TlsConfigs {
    pub fn get(&self, ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, String> {
        let key = ca_pem.map(str::to_owned);
        if let Ok(cache) = self.cache.lock()
            && let Some(c) = cache.get(&key)
        {
            return Ok(c.clone());
        }
        let config = Arc::new(build_client_config(ca_pem)?);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED_TLS_CONFIGS {
                cache.clear();
            }
            cache.insert(key, config.clone());
        }
        Ok(config)
    }
}

fn build_client_config(ca_pem: Option<&str>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("caPem is not valid PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("caPem holds an unusable certificate: {e}"))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates (caPem empty, or no system roots)".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// Limits the login phase runs under.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub timeout: Duration,
    pub max_line: usize,
}

/// Connects, secures and logs in. Every failure is one of the `Upstream*` errors (or a
/// timeout), which the session turns into `NO [UNAVAILABLE]`.
pub async fn connect_and_login(
    endpoint: &UpstreamEndpoint,
    username: &str,
    password: &MailPassword,
    tls: &TlsConfigs,
    limits: LoginLimits,
) -> Result<Upstream, Error> {
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
            let io = tls_handshake(tcp, endpoint, tls, limits.timeout).await?;
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
            let done = read_until_tagged(&mut plain, b"m1", limits).await?;
            if done.status != "OK" {
                return Err(Error::UpstreamTls {
                    endpoint: name,
                    detail: format!("STARTTLS refused: {}", done.text),
                });
            }
            let tcp = plain.into_inner()?;
            let io = tls_handshake(tcp, endpoint, tls, limits.timeout).await?;
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
    let caps = read_until_tagged(&mut conn, b"m2", limits)
        .await?
        .capabilities;

    let has = |c: &str| caps.iter().any(|x| x == c);
    let done = if has("AUTH=PLAIN") {
        authenticate_plain(&mut conn, username, password, has("SASL-IR"), limits).await?
    } else if has("LOGINDISABLED") {
        return Err(Error::UpstreamAuth {
            endpoint: name,
            username: username.to_owned(),
            detail: "server allows neither AUTH=PLAIN nor LOGIN".into(),
        });
    } else {
        login(&mut conn, username, password, has("LITERAL+"), limits).await?
    };
    if done.status != "OK" {
        return Err(Error::UpstreamAuth {
            endpoint: name,
            username: username.to_owned(),
            detail: done.text,
        });
    }
    let capabilities = match done.capabilities {
        c if !c.is_empty() => c,
        _ => {
            conn.write(b"m4 CAPABILITY\r\n").await?;
            conn.flush().await?;
            read_until_tagged(&mut conn, b"m4", limits)
                .await?
                .capabilities
        }
    };
    Ok(Upstream { conn, capabilities })
}

async fn tls_handshake(
    tcp: TcpStream,
    endpoint: &UpstreamEndpoint,
    tls: &TlsConfigs,
    timeout: Duration,
) -> Result<UpstreamIo, Error> {
    let name = format!("{}:{}", endpoint.host, endpoint.port);
    let fail = |detail: String| Error::UpstreamTls {
        endpoint: name.clone(),
        detail,
    };
    let config = tls.get(endpoint.ca_pem.as_deref()).map_err(&fail)?;
    let server_name =
        ServerName::try_from(endpoint.host.clone()).map_err(|e| fail(e.to_string()))?;
    let stream = tokio::time::timeout(
        timeout,
        TlsConnector::from(config).connect(server_name, tcp),
    )
    .await
    .map_err(|_| fail(format!("no TLS handshake within {timeout:?}")))?
    .map_err(|e| fail(e.to_string()))?;
    Ok(Box::new(stream))
}

async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
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
struct Done {
    status: String,
    text: String,
    capabilities: Vec<String>,
}

enum LoginStep {
    Continue,
    Done(Done),
}

async fn read_until_tagged<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    tag: &[u8],
    limits: LoginLimits,
) -> Result<Done, Error> {
    match read_step(conn, tag, limits, false).await? {
        LoginStep::Done(d) => Ok(d),
        LoginStep::Continue => Err(Error::UpstreamProtocol(
            "unexpected continuation request".into(),
        )),
    }
}

/// Reads responses until the tagged one (or a continuation request, if `continuation_ok`),
/// collecting capabilities from `* CAPABILITY` and `[CAPABILITY ...]`.
async fn read_step<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    tag: &[u8],
    limits: LoginLimits,
    continuation_ok: bool,
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
                return Err(Error::UpstreamProtocol(format!(
                    "server said BYE: {}",
                    printable(&line)
                )));
            }
            continue;
        }
        let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(b" ")) else {
            return Err(Error::UpstreamProtocol(format!(
                "unexpected response: {}",
                printable(&line)
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
            text: printable(text),
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

async fn authenticate_plain(
    conn: &mut Conn<UpstreamIo>,
    username: &str,
    password: &MailPassword,
    sasl_ir: bool,
    limits: LoginLimits,
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
        match read_step(conn, b"m3", limits, true).await? {
            LoginStep::Done(d) => return Ok(d),
            LoginStep::Continue => {}
        }
        conn.write_secret(response.as_bytes()).await?;
        conn.flush().await?;
    }
    read_until_tagged(conn, b"m3", limits).await
}

/// LOGIN with both arguments as literals: any byte of a password goes through unquoted.
async fn login(
    conn: &mut Conn<UpstreamIo>,
    username: &str,
    password: &MailPassword,
    literal_plus: bool,
    limits: LoginLimits,
) -> Result<Done, Error> {
    let user = username.as_bytes();
    let pass = password.expose().as_bytes();
    let plus = if literal_plus { "+" } else { "" };
    conn.write(format!("m3 LOGIN {{{}{plus}}}\r\n", user.len()).as_bytes())
        .await?;
    if !literal_plus {
        conn.flush().await?;
        if let LoginStep::Done(d) = read_step(conn, b"m3", limits, true).await? {
            return Ok(d);
        }
    }
    conn.write(user).await?;
    conn.write(format!(" {{{}{plus}}}\r\n", pass.len()).as_bytes())
        .await?;
    if !literal_plus {
        conn.flush().await?;
        if let LoginStep::Done(d) = read_step(conn, b"m3", limits, true).await? {
            return Ok(d);
        }
    }
    let mut secret = Zeroizing::new(Vec::with_capacity(pass.len() + 2));
    secret.extend_from_slice(pass);
    secret.extend_from_slice(b"\r\n");
    conn.write_secret(&secret).await?;
    conn.flush().await?;
    read_until_tagged(conn, b"m3", limits).await
}

pub fn strip_prefix_ci<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &text[prefix.len()..])
}

/// The list inside a `[CAPABILITY ...]` response code at the start of `text`.
pub fn capability_code(text: &[u8]) -> Option<&[u8]> {
    let rest = strip_prefix_ci(text, b"[CAPABILITY ")?;
    let end = rest.iter().position(|&c| c == b']')?;
    Some(&rest[..end])
}

pub fn parse_caps(list: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(list)
        .split_ascii_whitespace()
        .map(str::to_ascii_uppercase)
        .collect()
}

/// Upstream text for logs: printable ASCII, bounded.
pub fn printable(text: &[u8]) -> String {
    text.iter()
        .take(200)
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}
