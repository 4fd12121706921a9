//! The credential's SMTP policy as the relay applies it: address patterns, recipient count,
//! size, rates, and whether sending is allowed at all. Every refusal names its rule.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use mailcred_core::crd::{RateLimits, SmtpPolicy};

use crate::reply::Reply;

/// The policy rule a refusal comes from; also the metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    SendDisabled,
    AllowedSenders,
    AllowedRecipients,
    MaxRecipients,
    MaxMessageBytes,
    MessagesPerMinute,
    MessagesPerHour,
    RecipientsPerMinute,
    RecipientsPerHour,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::SendDisabled => "smtp.enabled",
            Rule::AllowedSenders => "smtp.allowedSenders",
            Rule::AllowedRecipients => "smtp.allowedRecipients",
            Rule::MaxRecipients => "smtp.maxRecipients",
            Rule::MaxMessageBytes => "smtp.maxMessageBytes",
            Rule::MessagesPerMinute => "smtp.rateLimits.messagesPerMinute",
            Rule::MessagesPerHour => "smtp.rateLimits.messagesPerHour",
            Rule::RecipientsPerMinute => "smtp.rateLimits.recipientsPerMinute",
            Rule::RecipientsPerHour => "smtp.rateLimits.recipientsPerHour",
        }
    }

    fn is_rate(self) -> bool {
        matches!(
            self,
            Rule::MessagesPerMinute
                | Rule::MessagesPerHour
                | Rule::RecipientsPerMinute
                | Rule::RecipientsPerHour
        )
    }

    /// 550 5.7.1 for a rule the message breaks, 452 4.7.0 for a rate (retry later),
    /// 552 5.3.4 for size (RFC 5321/3463 codes clients already understand).
    pub fn reply(self, detail: &str) -> Reply {
        let text = format!("policy {}: {detail}", self.as_str());
        if self.is_rate() {
            Reply::new(452, "4.7.0", text)
        } else if self == Rule::MaxMessageBytes {
            Reply::new(552, "5.3.4", text)
        } else {
            Reply::new(550, "5.7.1", text)
        }
    }
}

/// A mailbox in comparable form: local part lowercased, domain as lowercase ASCII (IDNA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalAddress {
    pub local: String,
    pub domain: String,
}

/// Normalizes `user@domain`; `None` if it is not an address we can reason about.
pub fn normalize(address: &str) -> Option<NormalAddress> {
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || local.len() > 64 || domain.is_empty() || domain.len() > 255 {
        return None;
    }
    if local.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let domain = normalize_domain(domain)?;
    Some(NormalAddress {
        local: local.to_lowercase(),
        domain,
    })
}

fn normalize_domain(domain: &str) -> Option<String> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() || domain.starts_with('[') {
        // Address literals are never in an allow-list.
        return None;
    }
    // Strict: STD3 (letters, digits, hyphen) and DNS length rules, so NUL, spaces, empty
    // labels and the like never reach a comparison.
    let ascii = idna::domain_to_ascii_strict(domain).ok()?;
    if ascii.is_empty() || !ascii.contains('.') && ascii != "localhost" {
        return None;
    }
    Some(ascii)
}

/// One allow-list entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Exact(NormalAddress),
    Domain(String),
    Any,
}

/// A compiled allow-list.
#[derive(Clone, Debug, Default)]
pub struct AddressList {
    patterns: Vec<Pattern>,
}

impl AddressList {
    /// Compiles entries; `allow_any` says whether a bare `*` means everyone (recipients) or
    /// is ignored (senders: least privilege). Entries that do not parse match nothing.
    pub fn compile(entries: &[String], allow_any: bool) -> Self {
        let patterns = entries
            .iter()
            .filter_map(|e| {
                let e = e.trim();
                if e == "*" {
                    return allow_any.then_some(Pattern::Any);
                }
                if let Some(domain) = e.strip_prefix("*@") {
                    return normalize_domain(domain).map(Pattern::Domain);
                }
                normalize(e).map(Pattern::Exact)
            })
            .collect();
        Self { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn allows(&self, address: &str) -> bool {
        let Some(a) = normalize(address) else {
            return false;
        };
        self.patterns.iter().any(|p| match p {
            Pattern::Any => true,
            Pattern::Domain(d) => *d == a.domain,
            Pattern::Exact(e) => *e == a,
        })
    }
}

/// The policy of one credential, compiled for matching.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub enabled: bool,
    pub senders: AddressList,
    /// `None`: any recipient.
    pub recipients: Option<AddressList>,
    pub max_recipients: u32,
    pub max_message_bytes: u64,
}

impl CompiledPolicy {
    /// `username` is the allowed sender when the list is empty.
    pub fn new(policy: &SmtpPolicy, username: &str) -> Self {
        let senders = if policy.allowed_senders.is_empty() {
            AddressList::compile(&[username.to_string()], false)
        } else {
            AddressList::compile(&policy.allowed_senders, false)
        };
        let recipients = (!policy.allowed_recipients.is_empty())
            .then(|| AddressList::compile(&policy.allowed_recipients, true));
        Self {
            enabled: policy.enabled,
            senders,
            recipients,
            max_recipients: policy.max_recipients,
            max_message_bytes: policy.max_message_bytes,
        }
    }

    pub fn check_sender(&self, address: &str) -> Result<(), Reply> {
        if self.senders.allows(address) {
            Ok(())
        } else {
            Err(Rule::AllowedSenders.reply(&format!("sender <{address}> is not allowed")))
        }
    }

    pub fn check_recipient(&self, address: &str) -> Result<(), Reply> {
        match &self.recipients {
            Some(list) if !list.allows(address) => {
                Err(Rule::AllowedRecipients.reply(&format!("recipient <{address}> is not allowed")))
            }
            _ => Ok(()),
        }
    }
}

/// Token buckets of one credential, shared by all connections.
#[derive(Debug)]
pub struct RateLimiters {
    limits: RateLimits,
    messages_per_minute: Option<DefaultDirectRateLimiter>,
    messages_per_hour: Option<DefaultDirectRateLimiter>,
    recipients_per_minute: Option<DefaultDirectRateLimiter>,
    recipients_per_hour: Option<DefaultDirectRateLimiter>,
}

impl RateLimiters {
    pub fn new(limits: &RateLimits) -> Self {
        let per_minute = |n: Option<u32>| {
            n.and_then(NonZeroU32::new)
                .map(|n| RateLimiter::direct(Quota::per_minute(n)))
        };
        let per_hour = |n: Option<u32>| {
            n.and_then(NonZeroU32::new)
                .map(|n| RateLimiter::direct(Quota::per_hour(n)))
        };
        Self {
            limits: limits.clone(),
            messages_per_minute: per_minute(limits.messages_per_minute),
            messages_per_hour: per_hour(limits.messages_per_hour),
            recipients_per_minute: per_minute(limits.recipients_per_minute),
            recipients_per_hour: per_hour(limits.recipients_per_hour),
        }
    }

    /// Limits these buckets were built from (rebuilt when the policy changes).
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Takes one message and `recipients` recipient tokens, or refuses naming the rule.
    /// Recipients are checked first: a refused message takes no message token.
    pub fn take(&self, recipients: u32) -> Result<(), Rule> {
        let n = NonZeroU32::new(recipients.max(1)).unwrap_or(NonZeroU32::MIN);
        for (limiter, rule) in [
            (&self.recipients_per_minute, Rule::RecipientsPerMinute),
            (&self.recipients_per_hour, Rule::RecipientsPerHour),
        ] {
            if let Some(l) = limiter {
                // InsufficientCapacity (more recipients than the burst) is a refusal too.
                if !matches!(l.check_n(n), Ok(Ok(()))) {
                    return Err(rule);
                }
            }
        }
        for (limiter, rule) in [
            (&self.messages_per_minute, Rule::MessagesPerMinute),
            (&self.messages_per_hour, Rule::MessagesPerHour),
        ] {
            if let Some(l) = limiter
                && l.check().is_err()
            {
                return Err(rule);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list(entries: &[&str], any: bool) -> AddressList {
        AddressList::compile(
            &entries.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            any,
        )
    }

    #[test]
    fn exact_match_is_case_insensitive() {
        let l = list(&["App@Example.COM"], false);
        assert!(l.allows("app@example.com"));
        assert!(l.allows("APP@EXAMPLE.com."));
        assert!(!l.allows("app2@example.com"));
        assert!(!l.allows("app@example.com.evil.test"));
    }

    #[test]
    fn domain_wildcard_matches_only_that_domain() {
        let l = list(&["*@example.com"], false);
        assert!(l.allows("anyone@EXAMPLE.com"));
        assert!(!l.allows("a@sub.example.com"));
        assert!(!l.allows("a@example.com.evil"));
        assert!(!l.allows("a@xexample.com"));
    }

    #[test]
    fn idn_domains_compare_in_ascii_form() {
        let l = list(&["*@bücher.example"], false);
        assert!(l.allows("a@xn--bcher-kva.example"));
        assert!(l.allows("a@BÜCHER.example"));
        let l = list(&["*@xn--bcher-kva.example"], false);
        assert!(l.allows("a@bücher.example"));
        assert!(!l.allows("a@bucher.example"));
    }

    #[test]
    fn star_is_any_only_for_recipients() {
        assert!(list(&["*"], true).allows("x@y.test"));
        assert!(!list(&["*"], false).allows("x@y.test"));
    }

    #[test]
    fn invalid_addresses_never_match() {
        let l = list(&["*"], true);
        for bad in [
            "",
            "@",
            "a@",
            "@b.test",
            "no-at",
            "a b@c.test",
            "a@[127.0.0.1]",
            "a@b\u{0}.test",
            "a@-.test..x",
        ] {
            assert!(!l.allows(bad), "{bad:?}");
        }
    }

    #[test]
    fn empty_sender_list_means_the_username() {
        let p = CompiledPolicy::new(&SmtpPolicy::default(), "me@example.test");
        assert!(p.check_sender("ME@example.test").is_ok());
        let r = p.check_sender("other@example.test").unwrap_err();
        assert_eq!((r.code, r.status), (550, "5.7.1"));
        assert!(r.lines[0].contains("smtp.allowedSenders"));
    }

    #[test]
    fn rate_refuses_after_burst_and_names_rule() {
        let r = RateLimiters::new(&RateLimits {
            messages_per_minute: Some(2),
            ..Default::default()
        });
        assert!(r.take(1).is_ok());
        assert!(r.take(1).is_ok());
        assert_eq!(r.take(1), Err(Rule::MessagesPerMinute));
        let reply = Rule::MessagesPerMinute.reply("x");
        assert_eq!((reply.code, reply.status), (452, "4.7.0"));
    }

    #[test]
    fn recipient_rate_refusal_takes_no_message_token() {
        let r = RateLimiters::new(&RateLimits {
            messages_per_minute: Some(1),
            recipients_per_hour: Some(3),
            ..Default::default()
        });
        assert_eq!(r.take(4), Err(Rule::RecipientsPerHour));
        assert!(r.take(3).is_ok());
    }

    proptest! {
        /// Matching is invariant under ASCII case changes of the address.
        #[test]
        fn case_never_changes_the_decision(local in "[a-zA-Z0-9._+-]{1,20}", domain in "[a-zA-Z0-9-]{1,15}\\.[a-zA-Z]{2,6}", flips in proptest::collection::vec(any::<bool>(), 64)) {
            let addr = format!("{local}@{domain}");
            let flipped: String = addr.chars().zip(flips.iter().cycle()).map(|(c, &f)| if f { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect();
            let exact = list(&[&addr], false);
            let dom = list(&[&format!("*@{domain}")], false);
            prop_assert_eq!(exact.allows(&addr), exact.allows(&flipped));
            prop_assert_eq!(dom.allows(&addr), dom.allows(&flipped));
        }

        /// An address matches a domain pattern only if its domain is that domain.
        #[test]
        fn domain_pattern_is_exact_on_domain(local in "[a-z]{1,8}", d1 in "[a-z]{1,8}\\.test", d2 in "[a-z]{1,8}\\.test") {
            let l = list(&[&format!("*@{d1}")], false);
            prop_assert_eq!(l.allows(&format!("{local}@{d2}")), d1 == d2);
        }

        /// Arbitrary strings never panic and a pattern list of nothing allows nothing.
        #[test]
        fn arbitrary_strings_are_safe(s in any::<String>()) {
            prop_assert!(!AddressList::compile(&[], true).allows(&s));
            let _ = list(&["*@example.test", "a@b.test"], true).allows(&s);
        }
    }
}
