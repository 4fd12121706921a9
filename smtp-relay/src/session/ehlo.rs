//! EHLO and HELO, and the SIZE they advertise.

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::upstream::Upstream;
use crate::wire::reply::Reply;

impl<U: Upstream, S: AsyncRead + AsyncWrite + Unpin> Session<'_, U, S> {
    pub(super) async fn ehlo(&mut self, host: &str) {
        self.abandon().await;
        self.greeted = true;
        // Account-set mode before AUTH: which account's limit applies is not known yet, so
        // SIZE without a number (RFC 1870: no fixed limit); MAIL and DATA still enforce it.
        let size = match self.advertised_size().await {
            Some(size) => format!("SIZE {size}"),
            None => "SIZE".to_owned(),
        };
        let name = self.shared.config.hostname.clone();
        self.reply(Reply::multi(
            250,
            vec![
                format!("{name} greets {host}"),
                "PIPELINING".into(),
                size,
                "8BITMIME".into(),
                "ENHANCEDSTATUSCODES".into(),
                "AUTH PLAIN LOGIN".into(),
                "HELP".into(),
            ],
        ));
    }

    pub(super) async fn helo(&mut self) {
        self.abandon().await;
        self.greeted = true;
        let name = self.shared.config.hostname.clone();
        self.reply(Reply::new(250, "", name));
    }

    /// The SIZE to advertise: the policy's limit, read from the loaded resource without
    /// decrypting (the sidecar's source), so that EHLO never waits for KMS. A source without
    /// an outline is asked for the credential once.
    async fn advertised_size(&self) -> Option<u64> {
        if self.account_mode() {
            return self
                .source()
                .and_then(|s| s.outline())
                .map(|o| o.policy.smtp.max_message_bytes);
        }
        Some(self.single_size().await)
    }

    async fn single_size(&self) -> u64 {
        if let Some(outline) = self.shared.source.outline() {
            return outline.policy.smtp.max_message_bytes;
        }
        let known = self.shared.advertised_size();
        if known != 0 {
            return known;
        }
        match self.credential().await {
            Ok(c) => {
                self.shared
                    .set_advertised_size(c.policy.smtp.max_message_bytes);
                c.policy.smtp.max_message_bytes
            }
            Err(_) => mailcred_core::crd::SmtpPolicy::default().max_message_bytes,
        }
    }
}
