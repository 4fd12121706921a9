use std::sync::Arc;

use rustls::{ClientConnection, ServerConfig, ServerConnection};

use super::*;
use crate::crd::{TlsMode, UpstreamEndpoint};
use crate::testkit::TestTls;

/// A CA and a server certificate for `localhost` signed by it.
fn pki() -> TestTls {
    TestTls::for_names(&["localhost"])
}

/// Runs a handshake in memory; the client's error if it refuses the server.
fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    name: &str,
) -> Result<(), rustls::Error> {
    let mut c = ClientConnection::new(client, server_name(name).unwrap())?;
    let mut s = ServerConnection::new(server)?;
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets()?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

fn endpoint(tls: TlsMode, ca_pem: Option<String>, insecure: bool) -> UpstreamEndpoint {
    UpstreamEndpoint {
        host: "localhost".into(),
        port: 1,
        tls,
        ca_pem,
        insecure,
        insecure_reason: None,
    }
}

#[test]
fn the_named_ca_is_trusted_and_replaces_the_system_roots() {
    let a = pki();
    let b = pki();
    let trusting_a = client_config(Some(&a.ca_pem)).unwrap();
    assert!(handshake(trusting_a.clone(), a.server.clone(), "localhost").is_ok());
    let refused = handshake(trusting_a.clone(), b.server.clone(), "localhost").unwrap_err();
    assert!(
        matches!(refused, rustls::Error::InvalidCertificate(_)),
        "{refused:?}"
    );
    let wrong_name = handshake(trusting_a, a.server.clone(), "example.test").unwrap_err();
    assert!(
        matches!(wrong_name, rustls::Error::InvalidCertificate(_)),
        "{wrong_name:?}"
    );
    if let Ok(system) = client_config(None) {
        let refused = handshake(system, a.server, "localhost").unwrap_err();
        assert!(matches!(refused, rustls::Error::InvalidCertificate(_)));
    }
}

#[test]
fn one_configuration_per_bundle() {
    let a = pki();
    let first = client_config(Some(&a.ca_pem)).unwrap();
    let again = client_config(Some(&a.ca_pem)).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
}

#[test]
fn plaintext_only_when_the_spec_says_insecure() {
    assert_eq!(
        for_endpoint(&endpoint(TlsMode::None, None, false)).unwrap_err(),
        TlsError::PlaintextNotAllowed
    );
    assert!(
        for_endpoint(&endpoint(TlsMode::None, None, true))
            .unwrap()
            .is_none()
    );
    let a = pki();
    for mode in [TlsMode::Implicit, TlsMode::Starttls] {
        // `insecure` never switches verification off for a TLS endpoint.
        let config = for_endpoint(&endpoint(mode, Some(a.ca_pem.clone()), true)).unwrap();
        assert!(config.is_some());
    }
}

#[test]
fn bad_bundles_say_what_is_wrong() {
    assert_eq!(
        ca_certificates("hello").unwrap_err(),
        TlsError::NoCertificate
    );
    let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        ca_certificates(broken),
        Err(TlsError::InvalidPem(_))
    ));
    let not_a_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        ca_certificates(not_a_cert),
        Err(TlsError::UnusableCertificate(_) | TlsError::InvalidPem(_))
    ));
    assert!(
        TlsError::NoCertificate
            .to_string()
            .contains("PEM CERTIFICATE")
    );
}

#[test]
fn certificate_rejections_are_found_by_type() {
    let err = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
    );
    assert!(is_certificate_rejection(&err));
    let other = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "certificate unknown issuer",
    );
    assert!(!is_certificate_rejection(&other));
}
