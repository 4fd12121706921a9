//! Scripted TLS servers for hostile-upstream and fault tests: a CA made in the test, a server
//! certificate for `localhost` (and 127.0.0.1) signed by it, and a loopback listener that runs
//! a per-connection script. The protocol the script speaks (SMTP, IMAP, HTTP) stays with the
//! crate that tests it; only the certificates and the accept loop are here.
//!
//! The CA and the server certificate are separate certificates on purpose: webpki refuses a
//! CA certificate presented as a server certificate (`CaUsedAsEndEntity`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A test CA and the server configuration of a certificate it signed.
#[derive(Clone)]
pub struct TestTls {
    /// The CA certificate, PEM: what a client under test trusts (an endpoint's `caPem`).
    pub ca_pem: String,
    /// The server side: the certificate for `localhost` and `127.0.0.1`, aws-lc-rs provider.
    pub server: Arc<ServerConfig>,
}

impl TestTls {
    /// A fresh CA and a server certificate for `localhost` and `127.0.0.1` signed by it.
    pub fn new() -> Self {
        Self::for_names(&["localhost", "127.0.0.1"])
    }

    /// A fresh CA and a server certificate for these DNS names or IP addresses.
    pub fn for_names(names: &[&str]) -> Self {
        let ca_key = KeyPair::generate().expect("generate the test CA key");
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).expect("test CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params
            .self_signed(&ca_key)
            .expect("self-sign the test CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::default();
        params.subject_alt_names = names.iter().map(|name| san(name)).collect();
        let key = KeyPair::generate().expect("generate the server key");
        let cert = params
            .signed_by(&key, &issuer)
            .expect("sign the server certificate");
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the aws-lc-rs provider supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the server certificate and key match");
        Self {
            ca_pem: ca.pem(),
            server: Arc::new(server),
        }
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server.clone())
    }
}

impl Default for TestTls {
    fn default() -> Self {
        Self::new()
    }
}

fn san(name: &str) -> SanType {
    match name.parse() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.try_into().expect("a valid DNS name")),
    }
}

/// A loopback listener with its own test CA, serving every connection on its own task.
pub struct ScriptedServer {
    pub addr: SocketAddr,
    pub port: u16,
    /// The CA that signed the server's certificate, PEM.
    pub ca_pem: String,
}

impl ScriptedServer {
    /// Serves each accepted TCP connection with `script(tcp, acceptor)`: for protocols that
    /// start in plaintext and upgrade (STARTTLS), the script runs the handshake itself.
    pub async fn plaintext_first<F, Fut>(script: F) -> Self
    where
        F: Fn(TcpStream, TlsAcceptor) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let tls = TestTls::new();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("the listener's address");
        let acceptor = tls.acceptor();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(script(tcp, acceptor.clone()));
            }
        });
        Self {
            addr,
            port: addr.port(),
            ca_pem: tls.ca_pem,
        }
    }

    /// Serves each accepted connection with `script(tls)` once the TLS handshake is done
    /// (implicit TLS); a connection whose handshake fails is dropped without running it.
    pub async fn implicit_tls<F, Fut>(script: F) -> Self
    where
        F: Fn(TlsStream<TcpStream>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let script = Arc::new(script);
        Self::plaintext_first(move |tcp, acceptor| {
            let script = script.clone();
            async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    script(tls).await;
                }
            }
        })
        .await
    }
}
