//! Shared fixtures for the core crate's tests, built with the test kit (`test-util`).
#![allow(dead_code)]

use mailcred_core::crd::{MailCredentialSpec, TlsMode};
use mailcred_core::testkit::{TestCredential, endpoint};
use mailcred_core::{CredentialBinding, MailPassword};

/// shop/billing: SMTP STARTTLS with the system roots, IMAP implicit TLS with its own CA.
pub fn credential() -> TestCredential {
    let mut imap = endpoint("imap.example.test", 993, TlsMode::Implicit);
    imap.ca_pem = Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into());
    TestCredential::new("shop", "billing")
        .imap_endpoint(imap)
        .service_accounts(&["billing"])
}

pub fn spec() -> MailCredentialSpec {
    credential().into_spec()
}

pub fn binding() -> CredentialBinding {
    credential().binding()
}

pub fn password(text: &str) -> MailPassword {
    MailPassword::new(text.to_string()).expect("valid password")
}

/// Every way an editor could redirect the password, each as a changed spec.
pub fn redirected_specs() -> Vec<(&'static str, MailCredentialSpec)> {
    let mut out = Vec::new();
    let mut s = spec();
    s.smtp.as_mut().unwrap().host = "smtp.attacker.test".into();
    out.push(("smtp host", s));
    let mut s = spec();
    s.smtp.as_mut().unwrap().port = 25;
    out.push(("smtp port", s));
    let mut s = spec();
    s.smtp.as_mut().unwrap().tls = TlsMode::Implicit;
    out.push(("smtp tls mode", s));
    let mut s = spec();
    let smtp = s.smtp.as_mut().unwrap();
    smtp.tls = TlsMode::None;
    smtp.insecure = true;
    out.push(("smtp plaintext", s));
    let mut s = spec();
    s.imap.as_mut().unwrap().ca_pem =
        Some("-----BEGIN CERTIFICATE-----\nATTACKER\n-----END CERTIFICATE-----\n".into());
    out.push(("imap CA", s));
    let mut s = spec();
    s.imap.as_mut().unwrap().ca_pem = None;
    out.push(("imap CA removed", s));
    let mut s = spec();
    s.imap.as_mut().unwrap().host = "imap.attacker.test".into();
    out.push(("imap host", s));
    let mut s = spec();
    s.imap = None;
    out.push(("imap endpoint removed", s));
    let mut s = spec();
    s.smtp = None;
    out.push(("smtp endpoint removed", s));
    let mut s = spec();
    s.username = "other@example.test".into();
    out.push(("username", s));
    out
}
