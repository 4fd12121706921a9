//! The relay's error type: failures that end a connection or the server, never a reply.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("accepting an SMTP connection failed: {0}")]
    Accept(#[source] io::Error),

    #[error("the credential has no spec.smtp endpoint; SMTP relaying needs one")]
    NoSmtpEndpoint,

    #[error("spec.smtp.caPem is not a usable PEM certificate bundle: {0}")]
    CaPem(String),

    #[error("spec.smtp has tls: none without insecure: true; refusing plaintext upstream")]
    PlaintextNotAllowed,

    #[error("building the upstream TLS settings failed: {0}")]
    Tls(String),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Accept(_) => "accept",
            Error::NoSmtpEndpoint => "no_smtp_endpoint",
            Error::CaPem(_) => "ca_pem",
            Error::PlaintextNotAllowed => "plaintext_not_allowed",
            Error::Tls(_) => "tls_config",
        }
    }
}
