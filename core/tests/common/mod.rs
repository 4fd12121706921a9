//! Shared fixtures for the core crate's tests, built with the test kit (`test-util`).
#![allow(dead_code)]

use mailcred_core::crd::{
    ClientAuthMethod, MailCredentialSpec, OAuthGrantKind, OAuthProvider, OAuthSpec, TlsMode,
};
use mailcred_core::testkit::{TestCredential, endpoint};
use mailcred_core::{CredentialBinding, GrantSecret, MailPassword, SaslMechanism};
use secrecy::SecretString;

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

/// An RSA-2048 PKCS#8 PEM key, freshly generated (privateKeyJwt and serviceAccount grants).
pub fn rsa_key_pem() -> String {
    use aws_lc_rs::encoding::AsDer;
    use base64::Engine;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let der = key.as_der().expect("pkcs8");
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// Microsoft client credentials with a certificate (every optional bound field set).
pub fn oauth() -> OAuthSpec {
    OAuthSpec {
        provider: OAuthProvider::Microsoft,
        tenant: Some("contoso.onmicrosoft.com".into()),
        token_endpoint: None,
        client_id: "00000000-1111-2222-3333-444444444444".into(),
        grant: OAuthGrantKind::ClientCredentials,
        client_auth: Some(ClientAuthMethod::PrivateKeyJwt),
        scopes: vec![
            "https://outlook.office365.com/.default".into(),
            "offline_access".into(),
        ],
        mechanism: SaslMechanism::Xoauth2,
        subject: Some("billing@example.test".into()),
        key_id: Some("kid-1".into()),
        certificate_thumbprint: Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        ca_pem: Some("-----BEGIN CERTIFICATE-----\nTOKENCA\n-----END CERTIFICATE-----\n".into()),
        insecure: false,
        insecure_reason: None,
    }
}

pub fn oauth_spec() -> MailCredentialSpec {
    credential().oauth(oauth()).into_spec()
}

pub fn key_secret(pem: &str) -> GrantSecret {
    GrantSecret {
        private_key_pem: Some(SecretString::from(pem)),
        ..GrantSecret::default()
    }
}

/// A named edit of `spec.oauth`.
type OAuthEdit = (&'static str, fn(&mut OAuthSpec));

/// Every single edit of a bound `spec.oauth` field, each as a changed spec (with the base
/// [`oauth_spec`]). Each one could send the grant secret elsewhere or widen what it obtains.
pub fn oauth_edited_specs() -> Vec<(&'static str, MailCredentialSpec)> {
    let edits: Vec<OAuthEdit> = vec![
        ("tenant", |o| {
            o.tenant = Some("attacker.onmicrosoft.com".into())
        }),
        ("token endpoint", |o| {
            o.token_endpoint = Some("https://token.attacker.test/token".into())
        }),
        ("provider", |o| {
            o.provider = OAuthProvider::Generic;
            o.token_endpoint = Some(
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
                    .into(),
            );
        }),
        ("client id", |o| o.client_id.push('5')),
        ("grant", |o| o.grant = OAuthGrantKind::RefreshToken),
        ("client auth", |o| {
            o.client_auth = Some(ClientAuthMethod::ClientSecretBasic)
        }),
        ("scope changed", |o| o.scopes[1] = "Mail.ReadWrite".into()),
        ("scope added", |o| o.scopes.push("profile".into())),
        ("scope removed", |o| {
            o.scopes.pop();
        }),
        ("scopes to preset", |o| o.scopes.clear()),
        ("mechanism", |o| o.mechanism = SaslMechanism::Oauthbearer),
        ("subject", |o| o.subject = Some("ceo@example.test".into())),
        ("subject removed", |o| o.subject = None),
        ("key id", |o| o.key_id = Some("kid-2".into())),
        ("key id removed", |o| o.key_id = None),
        ("thumbprint", |o| {
            o.certificate_thumbprint = Some("BAAAAAAAAAAAAAAAAAAAAAAAAAA".into())
        }),
        ("token CA", |o| {
            o.ca_pem =
                Some("-----BEGIN CERTIFICATE-----\nATTACKER\n-----END CERTIFICATE-----\n".into())
        }),
        ("token CA removed", |o| o.ca_pem = None),
        ("insecure", |o| {
            o.insecure = true;
            o.insecure_reason = Some("tests".into());
        }),
    ];
    edits
        .into_iter()
        .map(|(what, edit)| {
            let mut s = oauth_spec();
            edit(s.oauth.as_mut().unwrap());
            (what, s)
        })
        .collect()
}
