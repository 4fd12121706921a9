//! Shared fixtures for the core crate's tests.
#![allow(dead_code)]

use mailcred_core::crd::{
    Access, KmsKeyRef, KmsProviderKind, MailCredentialSpec, Policy, SealedSecret, TlsMode,
    UpstreamEndpoint,
};
use mailcred_core::{CredentialBinding, MailPassword};

pub fn spec() -> MailCredentialSpec {
    MailCredentialSpec {
        smtp: Some(UpstreamEndpoint {
            host: "smtp.example.test".into(),
            port: 587,
            tls: TlsMode::Starttls,
            ca_pem: None,
            insecure: false,
            insecure_reason: None,
        }),
        imap: Some(UpstreamEndpoint {
            host: "imap.example.test".into(),
            port: 993,
            tls: TlsMode::Implicit,
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
            insecure: false,
            insecure_reason: None,
        }),
        username: "app@example.test".into(),
        sealed_secret: SealedSecret {
            version: 1,
            kms: KmsKeyRef {
                provider: KmsProviderKind::Local,
                key_id: String::new(),
                wrapping: Default::default(),
                region: None,
                endpoint: None,
            },
            encrypted_data_key: String::new(),
            nonce: String::new(),
            ciphertext: String::new(),
        },
        policy: Policy::default(),
        access: Access {
            service_accounts: vec!["billing".into()],
        },
    }
}

pub fn binding() -> CredentialBinding {
    CredentialBinding::new("shop", "billing", &spec()).expect("valid binding")
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
