//! The operator's checks of `spec.policy` (operator/src/validation.rs), for a registration:
//! the same parsers (`mailcred_core::policy`, which the relay and the proxy match with), the
//! CRD's bounds, each refusal naming its field (`policy.smtp.allowedSenders[2]`).

use mailcred_core::crd::Policy;
use mailcred_core::policy::{AddressPattern, AddressRole, MailboxPattern};

use super::errors::{ApiError, Code};

/// The CRD's list bounds.
const MAX_SENDERS: usize = 256;
const MAX_RECIPIENTS: usize = 1024;
const MAX_MAILBOXES: usize = 256;

fn invalid_policy(field: String, why: String, fix: &str) -> ApiError {
    ApiError::new(Code::InvalidPolicy, format!("{field}: {why}"), fix).at(field)
}

/// The operator's checks of spec.policy (operator/src/validation.rs), with the same parsers.
pub fn check_policy(policy: &Policy) -> Result<(), ApiError> {
    let smtp = &policy.smtp;
    let lists = [
        (
            "allowedSenders",
            &smtp.allowed_senders,
            AddressRole::Sender,
            MAX_SENDERS,
        ),
        (
            "allowedRecipients",
            &smtp.allowed_recipients,
            AddressRole::Recipient,
            MAX_RECIPIENTS,
        ),
    ];
    for (key, list, role, max) in lists {
        if list.len() > max {
            return Err(invalid_policy(
                format!("policy.smtp.{key}"),
                format!("more than {max} entries"),
                "use domain patterns (*@example.com) instead of long lists",
            ));
        }
        for (i, p) in list.iter().enumerate() {
            AddressPattern::parse(p, role).map_err(|why| {
                invalid_policy(
                    format!("policy.smtp.{key}[{i}]"),
                    format!("{p:?}: {why}"),
                    "use user@example.com or *@example.com (recipients also *)",
                )
            })?;
        }
    }
    if !(1..=1000).contains(&smtp.max_recipients) {
        return Err(invalid_policy(
            "policy.smtp.maxRecipients".into(),
            "must be from 1 to 1000".into(),
            "give the most recipients one message may have",
        ));
    }
    if !(1024..=157_286_400).contains(&smtp.max_message_bytes) {
        return Err(invalid_policy(
            "policy.smtp.maxMessageBytes".into(),
            "must be from 1024 to 157286400".into(),
            "give the largest message in bytes",
        ));
    }
    let rates = &smtp.rate_limits;
    for (key, rate) in [
        ("messagesPerMinute", rates.messages_per_minute),
        ("messagesPerHour", rates.messages_per_hour),
        ("recipientsPerMinute", rates.recipients_per_minute),
        ("recipientsPerHour", rates.recipients_per_hour),
    ] {
        if rate == Some(0) {
            return Err(invalid_policy(
                format!("policy.smtp.rateLimits.{key}"),
                "must be at least 1".into(),
                "leave the rate out for no limit",
            ));
        }
    }
    let imap = &policy.imap;
    if imap.allowed_mailboxes.is_empty() || imap.allowed_mailboxes.len() > MAX_MAILBOXES {
        return Err(invalid_policy(
            "policy.imap.allowedMailboxes".into(),
            format!("needs 1 to {MAX_MAILBOXES} entries"),
            "list the mailboxes the app may open, e.g. [\"INBOX\"]",
        ));
    }
    for (i, p) in imap.allowed_mailboxes.iter().enumerate() {
        MailboxPattern::parse(p).map_err(|why| {
            invalid_policy(
                format!("policy.imap.allowedMailboxes[{i}]"),
                format!("{p:?}: {why}"),
                "use a mailbox name or a pattern with * (Archive/*)",
            )
        })?;
    }
    if imap.seen_only && !imap.read_only {
        return Err(invalid_policy(
            "policy.imap.seenOnly".into(),
            "seenOnly needs readOnly: true".into(),
            "remove seenOnly, or set readOnly: true",
        ));
    }
    Ok(())
}
