//! One bounded HTTP/1.1 POST to a token endpoint: verified TLS from `mailcred_core::tls` only
//! (system roots or the spec's caPem), a connect and a total timeout, a reply-size cap read
//! without buffering more than the cap. The request body carries secrets: it lives in a
//! zeroizing buffer, and header values with secrets are marked sensitive.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mailcred_core::TokenError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

/// Bounds of one token request.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// The whole exchange, connect included.
    pub total: Duration,
    /// Largest reply body read; token replies are a few KiB.
    pub max_reply: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            total: Duration::from_secs(10),
            max_reply: 64 * 1024,
        }
    }
}

/// Where requests go, parsed once from the spec.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The URL as configured: named in errors (never carries a secret: userinfo is refused).
    pub url: String,
    host: String,
    port: u16,
    path: String,
    authority: String,
    /// `None`: plaintext http (spec.oauth.insecure only).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    pub fn parse(url: &str, ca_pem: Option<&str>, insecure: bool) -> Result<Self, TokenError> {
        let config = |m: String| TokenError::Config(m);
        let uri: Uri = url
            .parse()
            .map_err(|_| config(format!("token endpoint {url:?} is not a URL")))?;
        let authority = uri
            .authority()
            .ok_or_else(|| config(format!("token endpoint {url:?} has no host")))?;
        if authority.as_str().contains('@') {
            return Err(config(
                "the token endpoint URL must not carry credentials (user:password@)".into(),
            ));
        }
        let (tls, default_port) = match uri.scheme_str() {
            Some("https") => {
                let tls = mailcred_core::tls::client_config(ca_pem)
                    .map_err(|e| config(format!("token endpoint TLS: {e}")))?;
                (Some(tls), 443)
            }
            Some("http") if insecure => (None, 80),
            Some("http") => {
                return Err(config(
                    "an http:// token endpoint needs spec.oauth.insecure: true (tests only)".into(),
                ));
            }
            _ => return Err(config(format!("token endpoint {url:?} must be https://"))),
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Self {
            url: url.to_string(),
            port: authority.port_u16().unwrap_or(default_port),
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
            authority: authority.as_str().to_string(),
            host,
            tls,
        })
    }

    fn unreachable(&self, detail: impl ToString) -> TokenError {
        TokenError::Unreachable {
            endpoint: self.url.clone(),
            detail: detail.to_string(),
        }
    }
}

/// A form body that is zeroized when hyper drops it.
pub type SecretBody = Full<Cursor<Zeroizing<Vec<u8>>>>;

/// A reply: status and the (capped) body, zeroized on drop (it holds tokens).
pub struct Reply {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

impl Reply {
    /// A reply from its parts: for the parsers' tests, here and in kubectl-mailcred's flows.
    pub fn new(status: u16, body: &[u8]) -> Self {
        Reply {
            status,
            body: Zeroizing::new(body.to_vec()),
        }
    }
}

/// POSTs `form` (already urlencoded) with an optional `Authorization` value.
pub async fn post_form(
    endpoint: &Endpoint,
    limits: HttpLimits,
    form: Zeroizing<String>,
    authorization: Option<Zeroizing<String>>,
) -> Result<Reply, TokenError> {
    let timeout = TokenError::Timeout {
        endpoint: endpoint.url.clone(),
        seconds: limits.total.as_secs().max(1),
    };
    tokio::time::timeout(
        limits.total,
        exchange_any(endpoint, limits, form, authorization),
    )
    .await
    .unwrap_or(Err(timeout))
}

async fn exchange_any(
    endpoint: &Endpoint,
    limits: HttpLimits,
    form: Zeroizing<String>,
    authorization: Option<Zeroizing<String>>,
) -> Result<Reply, TokenError> {
    let connect = async {
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| endpoint.unreachable(e.kind()))?;
        let _ = tcp.set_nodelay(true);
        match &endpoint.tls {
            None => Ok(Stream::Plain(tcp)),
            Some(config) => {
                let name = mailcred_core::tls::server_name(&endpoint.host)
                    .map_err(|e| TokenError::Config(e.to_string()))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| match mailcred_core::tls::handshake_failure(&e) {
                        Some(tls) => endpoint.unreachable(format!("TLS: {tls}")),
                        None => endpoint.unreachable(e.kind()),
                    })?;
                Ok(Stream::Tls(Box::new(tls)))
            }
        }
    };
    let stream = tokio::time::timeout(limits.connect, connect)
        .await
        .map_err(|_| TokenError::Timeout {
            endpoint: endpoint.url.clone(),
            seconds: limits.connect.as_secs().max(1),
        })??;
    match stream {
        Stream::Plain(s) => exchange(s, endpoint, limits, form, authorization).await,
        Stream::Tls(s) => exchange(*s, endpoint, limits, form, authorization).await,
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Aborts the connection driver when the exchange ends (reply read, error or timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<S>(
    io: S,
    endpoint: &Endpoint,
    limits: HttpLimits,
    form: Zeroizing<String>,
    authorization: Option<Zeroizing<String>>,
) -> Result<Reply, TokenError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, SecretBody>(TokioIo::new(io))
            .await
            .map_err(|e| endpoint.unreachable(e))?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let body: Zeroizing<Vec<u8>> = Zeroizing::new(form.as_bytes().to_vec());
    drop(form);
    let mut request = Request::post(endpoint.path.as_str())
        .header(HOST, endpoint.authority.as_str())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, "mailcred")
        .body(Full::new(Cursor::new(body)))
        .map_err(|e| TokenError::Config(format!("token request: {e}")))?;
    if let Some(auth) = authorization {
        let mut value = HeaderValue::from_str(&auth)
            .map_err(|_| TokenError::Config("client credentials are not header-safe".into()))?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| endpoint.unreachable(e))?;
    let status = response.status().as_u16();
    let too_large = || TokenError::TooLarge {
        endpoint: endpoint.url.clone(),
        limit: limits.max_reply,
    };
    // A declared length over the cap is refused before reading any of it.
    if let Some(len) = response.headers().get(http::header::CONTENT_LENGTH)
        && len
            .to_str()
            .ok()
            .and_then(|l| l.parse::<u64>().ok())
            .is_none_or(|l| l > limits.max_reply as u64)
    {
        return Err(too_large());
    }
    let mut body = response.into_body();
    let mut out = Zeroizing::new(Vec::with_capacity(4096));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| endpoint.unreachable(e))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limits.max_reply {
                return Err(too_large());
            }
            // Reserve first so the buffer holding tokens is not reallocated (and copied) by
            // extend: the old block would be freed unzeroized.
            if out.capacity() < out.len() + data.len() {
                let mut bigger = Zeroizing::new(Vec::with_capacity(
                    (out.len() + data.len()).max(out.capacity() * 2),
                ));
                bigger.extend_from_slice(&out);
                out = bigger;
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Reply { status, body: out })
}
