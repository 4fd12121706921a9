//! MAIL and RCPT: the policy first, then upstream. MAIL opens the upstream transaction (a
//! pooled, authenticated connection); each RCPT the policy allows is passed through, and the
//! application hears upstream's verdict on that recipient.

use std::sync::Arc;
use std::time::Instant;

use mailcred_core::crd::SmtpPolicy;
use mailcred_core::credential::UsableCredential;
use mailcred_core::policy::AddressError;
use smtp_proto::{MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::state::{Auth, Transaction};
use crate::outcome::{Outcome, Reason};
use crate::policy::{CompiledPolicy, Denial, Rule};
use crate::upstream::{RelayAddress, Transaction as _, Upstream};
use crate::wire::reply::Reply;

/// What the application hears for an address the relay cannot carry.
fn address_reply(error: &AddressError, sender: bool) -> Reply {
    match error {
        AddressError::NonAsciiLocal => Reply::new(
            553,
            "5.6.7",
            "SMTPUTF8 is not offered: non-ASCII local parts cannot be relayed",
        ),
        _ if sender => Reply::new(501, "5.1.7", format!("invalid sender address: {error}")),
        _ => Reply::new(501, "5.1.3", format!("invalid recipient address: {error}")),
    }
}

impl<U: Upstream, S: AsyncRead + AsyncWrite + Unpin> Session<'_, U, S> {
    /// The decrypted credential, or the reply to give and the reason to audit.
    pub(super) async fn credential(&self) -> Result<Arc<UsableCredential>, (Reply, Reason)> {
        let Some(source) = self.source() else {
            // Account-set mode, and the picked account is gone (deleted, access revoked,
            // lifetime ended): as for any source that fails.
            tracing::warn!(account = ?self.account, "credential unavailable: the account is no longer served");
            let reply = Reply::new(
                454,
                "4.7.0",
                "credential unavailable (account_unavailable); try again later",
            );
            return Err((reply, Reason::Credential("account_unavailable")));
        };
        let fetch = source.credential();
        match tokio::time::timeout(self.shared.config.credential_timeout, fetch).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                let label = e.metric_label();
                tracing::warn!(error = %e, label, "credential unavailable");
                let reply = Reply::new(
                    454,
                    "4.7.0",
                    format!("credential unavailable ({label}); try again later"),
                );
                Err((reply, Reason::Credential(label)))
            }
            Err(_) => {
                tracing::warn!("credential source did not answer in time");
                let reply = Reply::new(
                    451,
                    "4.4.3",
                    "credential unavailable (timeout); try again later",
                );
                Err((reply, Reason::CredentialTimeout))
            }
        }
    }

    /// The SMTP policy as it is now: the loaded resource's (edits reach open sessions at the
    /// next MAIL), or the decrypted credential's when the source has no outline.
    fn current_policy(&self, credential: &UsableCredential) -> SmtpPolicy {
        match self.source().and_then(|s| s.outline()) {
            Some(outline) if outline.id == credential.id() => outline.policy.smtp,
            _ => credential.policy.smtp.clone(),
        }
    }

    pub(super) async fn mail(&mut self, address: &str, size: usize, flags: u64) -> Reply {
        if !self.greeted {
            return Reply::new(503, "5.5.1", "send EHLO or HELO first");
        }
        if self.tx.is_some() {
            return Reply::new(503, "5.5.1", "nested MAIL command; send RSET first");
        }
        if self.shared.config.local_token.is_some() && self.auth != Auth::Done {
            return Reply::new(530, "5.7.0", "authentication required");
        }
        if flags & MAIL_BODY_BINARYMIME != 0 {
            return Reply::new(555, "5.5.4", "BODY=BINARYMIME is not supported");
        }
        if flags & MAIL_SMTPUTF8 != 0 {
            return Reply::new(555, "5.5.4", "SMTPUTF8 is not offered");
        }
        let started = Instant::now();
        let credential = match self.credential().await {
            Ok(c) => c,
            Err((reply, reason)) => {
                self.refused_at_mail(address, Outcome::TemporaryFailure, reason, None, started);
                return reply;
            }
        };
        let smtp = self.current_policy(&credential);
        if !self.account_mode() {
            // The SIZE EHLO advertises before anyone authenticated: one credential only.
            self.shared.set_advertised_size(smtp.max_message_bytes);
        }
        let policy = CompiledPolicy::new(&smtp, &credential.username);
        let sender = if !policy.enabled {
            Err(Denial::new(
                Rule::SendDisabled,
                "sending is disabled for this credential",
            ))
        } else if size as u64 > policy.max_message_bytes {
            Err(Denial::new(
                Rule::MaxMessageBytes,
                format!(
                    "declared size {size} exceeds {} bytes",
                    policy.max_message_bytes
                ),
            ))
        } else if address.is_empty() {
            Err(Denial::new(
                Rule::AllowedSenders,
                "the null sender <> is not allowed",
            ))
        } else {
            match RelayAddress::parse(address) {
                Err(e) => return address_reply(&e, true),
                Ok(a) => policy.check_sender(a.address()).map(|()| a),
            }
        };
        let sender = match sender {
            Ok(s) => s,
            Err(denial) => {
                self.deny(denial.rule);
                let reason = Reason::Policy(denial.rule);
                self.refused_at_mail(
                    address,
                    Outcome::PolicyDenied,
                    reason,
                    Some(&credential),
                    started,
                );
                return denial.into();
            }
        };
        let upstream = match self.shared.upstream.begin(&credential, &sender).await {
            Ok(t) => t,
            Err(verdict) => {
                if verdict.reason == Some(Reason::UpstreamAuth) {
                    self.upstream_auth_failed(&credential, verdict.upstream_code);
                }
                if let Some(reason) = verdict.reason {
                    self.refused_at_mail(
                        address,
                        verdict.outcome,
                        reason,
                        Some(&credential),
                        started,
                    );
                }
                return verdict.reply;
            }
        };
        self.tx = Some(Transaction {
            credential,
            policy,
            rate_limits: smtp.rate_limits,
            sender: address.to_string(),
            recipients: Vec::new(),
            refused: 0,
            last_refusal: None,
            upstream: Some(upstream),
            started,
        });
        Reply::new(250, "2.1.0", "sender ok")
    }

    pub(super) async fn rcpt(&mut self, address: &str) -> Reply {
        let Some(tx) = self.tx.as_mut() else {
            return Reply::new(503, "5.5.1", "need MAIL before RCPT");
        };
        let recipient = match RelayAddress::parse(address) {
            Ok(r) => r,
            Err(e) => {
                tx.refused += 1;
                return address_reply(&e, false);
            }
        };
        let max = tx.policy.max_recipients as usize;
        let allowed = if tx.recipients.len() >= max {
            Err(Denial::new(
                Rule::MaxRecipients,
                format!("at most {max} recipients per message"),
            ))
        } else {
            tx.policy.check_recipient(recipient.address())
        };
        if let Err(denial) = allowed {
            tx.refused += 1;
            tx.last_refusal = Some((Outcome::PolicyDenied, Reason::Policy(denial.rule)));
            let rule = denial.rule;
            self.deny(rule);
            return denial.into();
        }
        let Some(upstream) = tx.upstream.as_mut() else {
            return Reply::new(503, "5.5.1", "no transaction; send MAIL first");
        };
        let verdict = upstream.recipient(&recipient).await;
        if !verdict.is_accepted() {
            tx.refused += 1;
            if let Some(reason) = verdict.reason {
                tx.last_refusal = Some((verdict.outcome, reason));
            }
            return verdict.reply;
        }
        tx.recipients.push(recipient);
        Reply::new(250, "2.1.5", "recipient ok")
    }

    /// Ends a transaction that never reached the end of DATA (RSET upstream). One whose
    /// recipients were refused is audited as a refused message: the client gave up because
    /// of it.
    pub(super) async fn abandon(&mut self) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        if let Some((outcome, reason)) = tx.last_refusal {
            self.count(outcome);
            self.audit_tx(&tx, 0, None, outcome, Some(reason));
        }
        if let Some(upstream) = tx.upstream {
            upstream.abort().await;
        }
    }
}
