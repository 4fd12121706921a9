//! The relay's error type: failures that end a connection or the server, never a reply.

use std::io;

use mailcred_core::tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("accepting an SMTP connection failed: {0}")]
    Accept(#[source] io::Error),

    #[error(transparent)]
    Listen(#[from] mailcred_core::accept::AcceptError),

    #[error("the credential has no spec.smtp endpoint; SMTP relaying needs one")]
    NoSmtpEndpoint,

    #[error("spec.smtp TLS settings: {0}")]
    Tls(#[from] TlsError),

    #[error(
        "account-set mode needs a local token: without one any process of the pod could send as any account; give the sidecar the app token file"
    )]
    AccountModeWithoutToken,

    #[error("the relay already serves an account directory; give `with_accounts` one only")]
    AccountDirectoryTwice,
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Accept(_) | Error::Listen(_) => "accept",
            Error::NoSmtpEndpoint => "no_smtp_endpoint",
            Error::AccountModeWithoutToken => "account_mode_without_token",
            Error::AccountDirectoryTwice => "account_directory_twice",
            Error::Tls(
                TlsError::InvalidPem(_)
                | TlsError::NoCertificate
                | TlsError::UnusableCertificate(_),
            ) => "ca_pem",
            Error::Tls(TlsError::PlaintextNotAllowed) => "plaintext_not_allowed",
            Error::Tls(_) => "tls_config",
        }
    }
}
