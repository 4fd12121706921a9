//! Files mode (cert-manager): when the mounted certificate changes, the listener serves the
//! new one without a restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use mailcred_operator::metrics::Metrics;
use mailcred_operator::webhook::certs::{self, CertBundle, Lifetimes};
use mailcred_operator::webhook::{self, tls};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_util::sync::CancellationToken;

fn bundle() -> CertBundle {
    let lifetimes = Lifetimes {
        ca: time::Duration::days(30),
        serving: time::Duration::days(7),
        renew_before: time::Duration::days(1),
    };
    certs::generate_bundle(
        &["localhost".into()],
        time::OffsetDateTime::now_utc(),
        &lifetimes,
    )
    .unwrap()
}

/// Completes a TLS handshake trusting only `ca_pem`.
async fn handshake(addr: SocketAddr, ca_pem: &str) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn files_mode_picks_up_a_rotated_certificate() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let first = bundle();
    std::fs::write(&cert_path, &first.cert).unwrap();
    std::fs::write(&key_path, &first.key).unwrap();

    let source = tls::Source::Files {
        cert: cert_path.clone(),
        key: key_path.clone(),
    };
    // Files mode never calls the API; the client is only there to satisfy the signature.
    let (service, _handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let client = kube::Client::new(service, "default");
    let loaded = tls::load(&client, &source).await.unwrap();
    let config = tls::rustls_config(&loaded.0, &loaded.1).await.unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(tls::keep_current(
        client,
        source,
        config.clone(),
        loaded,
        Duration::from_millis(20),
        Metrics::default(),
        shutdown.clone(),
    ));

    let handle = axum_server::Handle::new();
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    tokio::spawn(webhook::serve(
        "127.0.0.1:0".parse().unwrap(),
        config,
        router,
        handle.clone(),
    ));
    let addr = handle.listening().await.unwrap();

    handshake(addr, &first.ca_bundle)
        .await
        .expect("first certificate served");
    let second = bundle();
    assert!(
        handshake(addr, &second.ca_bundle).await.is_err(),
        "the new CA does not verify the old certificate"
    );

    std::fs::write(&key_path, &second.key).unwrap();
    std::fs::write(&cert_path, &second.cert).unwrap();
    let mut switched = false;
    for _ in 0..500 {
        if handshake(addr, &second.ca_bundle).await.is_ok() {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(switched, "the rotated certificate is served");
    assert!(
        handshake(addr, &first.ca_bundle).await.is_err(),
        "the old one no longer"
    );
    shutdown.cancel();
    handle.shutdown();
}
