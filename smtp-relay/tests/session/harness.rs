//! The session tests' relay: one credential (`support::app::credential`) or a given source,
//! on a recording upstream.

use std::sync::Arc;

use async_trait::async_trait;
use mailcred_core::Error;
use mailcred_core::crd::SmtpPolicy;
use mailcred_core::credential::{CredentialSource, UsableCredential};
use mailcred_smtp::RelayConfig;

use crate::support::app::{self, Relay, credential};

/// The upstream password of `support::app::credential`.
pub const PASSWORD: &str = "s3cret-Upstream-Pw";

/// A credential source that answers with a credential or an error.
pub struct Source(pub Result<Arc<UsableCredential>, fn() -> Error>);

#[async_trait]
impl CredentialSource for Source {
    async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
        match &self.0 {
            Ok(c) => Ok(c.clone()),
            Err(f) => Err(f()),
        }
    }
}

pub async fn start_with(policy: SmtpPolicy, config: RelayConfig, source: Option<Source>) -> Relay {
    let source = source.unwrap_or(Source(Ok(credential(policy))));
    app::start(Arc::new(source), config).await
}

pub async fn start(policy: SmtpPolicy) -> Relay {
    start_with(policy, RelayConfig::default(), None).await
}

pub fn msg(from: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <x@example.test>\r\nSubject: hi\r\n\r\nhello\r\n..dot line\r\n.\r\n"
    )
}
