//! Policy edits reaching open sessions. Before every command and on every tick the session
//! asks its credential source (in account-set mode: its account's, looked up again, so a
//! deleted or revoked account ends the session) for the policy loaded now ([`CredentialSource::outline`], no
//! decryption) and applies it. When the open session cannot go on under the new policy, it
//! ends with a BYE that says why: IMAP disabled, the selected mailbox no longer allowed, or
//! read-only now while a mailbox is open read-write (the application may hold state that
//! assumes it can write; re-opening is the honest way to tell it otherwise).
//!
//! [`CredentialSource::outline`]: mailcred_core::credential::CredentialSource::outline

use mailcred_core::crd::ImapAccess;

use super::state::{ActivePolicy, Relay, Session, Step};
use crate::error::Error;
use crate::outcome::{Outcome, Reason};

/// Why the new policy ends an open session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PolicyEnd {
    CredentialReplaced,
    ImapDisabled,
    MailboxNoLongerAllowed,
    NowReadOnly,
}

impl PolicyEnd {
    fn bye(self) -> &'static [u8] {
        match self {
            PolicyEnd::CredentialReplaced => {
                b"* BYE [UNAVAILABLE] The credential of this session was replaced; log in again\r\n"
            }
            PolicyEnd::ImapDisabled => {
                b"* BYE [NOPERM] IMAP was disabled for this credential\r\n"
            }
            PolicyEnd::MailboxNoLongerAllowed => {
                b"* BYE [NOPERM] The selected mailbox is no longer allowed by this credential's policy\r\n"
            }
            PolicyEnd::NowReadOnly => {
                b"* BYE [NOPERM] This credential's policy became read-only while a mailbox was open for changes; log in again\r\n"
            }
        }
    }
}

impl Session<'_> {
    /// Takes up the policy loaded now, or ends the session when it cannot go on under it.
    pub(super) async fn apply_policy_changes(&mut self, r: &mut Relay) -> Result<Step, Error> {
        let Some(source) = self.source() else {
            // Account-set mode: the directory no longer serves this session's account
            // (deleted, access revoked, lifetime ended). Its session ends now, not at logout.
            tracing::info!(credential = %r.cred.id(), "IMAP session ended: its account is no longer available");
            self.deny("", Reason::CredentialUnavailable, None);
            self.app
                .write(b"* BYE [UNAVAILABLE] This account is no longer available\r\n")
                .await?;
            return Ok(Step::Close(Outcome::AccountUnavailable));
        };
        // `None`: the source cannot tell without decrypting; the login's policy stays.
        let Some(outline) = source.outline() else {
            return Ok(Step::Continue);
        };
        let end = if outline.id != r.cred.id() {
            Some(PolicyEnd::CredentialReplaced)
        } else {
            if outline.policy.imap != r.policy.imap {
                let next = ActivePolicy::new(outline.policy.imap);
                tracing::info!(
                    credential = %r.cred.id(),
                    access = ?next.access,
                    "IMAP policy changed; the open session follows it"
                );
                r.caps = Relay::capabilities_for(&r.upstream_caps, next.access);
                r.policy = next;
            }
            // Checked even when nothing changed now: a SELECT sent before the change may
            // have completed since.
            ends_session(&r.policy, r)
        };
        let Some(end) = end else {
            return Ok(Step::Continue);
        };
        tracing::info!(credential = %r.cred.id(), why = ?end, "IMAP session ended: the policy changed");
        self.deny(
            "",
            Reason::PolicyChanged,
            r.selected.as_ref().map(|s| s.name.as_str()),
        );
        self.app.write(end.bye()).await?;
        Ok(Step::Close(Outcome::PolicyChanged))
    }
}

fn ends_session(next: &ActivePolicy, r: &Relay) -> Option<PolicyEnd> {
    if !next.imap.enabled {
        return Some(PolicyEnd::ImapDisabled);
    }
    let selected = r.selected.as_ref()?;
    if !next.patterns.allows_decoded(&selected.name) {
        return Some(PolicyEnd::MailboxNoLongerAllowed);
    }
    if selected.writable && next.access == ImapAccess::ReadOnly {
        return Some(PolicyEnd::NowReadOnly);
    }
    None
}
