//! The credential's SMTP policy as the relay applies it: address patterns (core's one
//! parser), recipient count, size, rates, whether sending is allowed at all, and the From /
//! Sender headers. Every refusal is a [`Denial`] naming its rule; the session turns it into
//! a reply in one place (`wire::reply`).

pub mod headers;
mod rate;
mod rfc5322;

use mailcred_core::crd::SmtpPolicy;
use mailcred_core::policy::address::PatternListError;
use mailcred_core::policy::{Address, AddressPatterns, AddressRole};

pub use rate::RateLimiters;

/// The policy rule a refusal comes from; also the metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// Every rule: the metrics start with each at 0, so a first refusal shows up in rate().
    pub const ALL: [Rule; 9] = [
        Rule::SendDisabled,
        Rule::AllowedSenders,
        Rule::AllowedRecipients,
        Rule::MaxRecipients,
        Rule::MaxMessageBytes,
        Rule::MessagesPerMinute,
        Rule::MessagesPerHour,
        Rule::RecipientsPerMinute,
        Rule::RecipientsPerHour,
    ];

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

    pub fn is_rate(self) -> bool {
        matches!(
            self,
            Rule::MessagesPerMinute
                | Rule::MessagesPerHour
                | Rule::RecipientsPerMinute
                | Rule::RecipientsPerHour
        )
    }
}

/// A policy refusal: which rule, and what about the message broke it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub rule: Rule,
    pub detail: String,
}

impl Denial {
    pub fn new(rule: Rule, detail: impl Into<String>) -> Self {
        Self {
            rule,
            detail: detail.into(),
        }
    }
}

/// An allow-list; one that does not parse allows nothing and says why.
#[derive(Debug)]
struct AllowList(Result<AddressPatterns, PatternListError>);

impl AllowList {
    fn parse(entries: &[String], role: AddressRole) -> Self {
        Self(AddressPatterns::parse_all(entries, role))
    }

    fn check(&self, rule: Rule, what: &str, address: &Address) -> Result<(), Denial> {
        match &self.0 {
            Ok(list) if list.allows(address) => Ok(()),
            Ok(_) => Err(Denial::new(
                rule,
                format!("{what} <{address}> is not allowed"),
            )),
            // The operator refuses such a list; a relay that sees one anyway allows nothing.
            Err(e) => Err(Denial::new(
                rule,
                format!("the list has an entry that does not parse: {e}"),
            )),
        }
    }
}

/// The policy of one credential, compiled for matching.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub enabled: bool,
    senders: AllowList,
    /// `None`: any recipient.
    recipients: Option<AllowList>,
    pub max_recipients: u32,
    pub max_message_bytes: u64,
}

impl CompiledPolicy {
    /// `username` is the allowed sender when the list is empty.
    pub fn new(policy: &SmtpPolicy, username: &str) -> Self {
        let senders = if policy.allowed_senders.is_empty() {
            AllowList::parse(&[username.to_string()], AddressRole::Sender)
        } else {
            AllowList::parse(&policy.allowed_senders, AddressRole::Sender)
        };
        let recipients = (!policy.allowed_recipients.is_empty())
            .then(|| AllowList::parse(&policy.allowed_recipients, AddressRole::Recipient));
        Self {
            enabled: policy.enabled,
            senders,
            recipients,
            max_recipients: policy.max_recipients,
            max_message_bytes: policy.max_message_bytes,
        }
    }

    pub fn check_sender(&self, address: &Address) -> Result<(), Denial> {
        self.senders.check(Rule::AllowedSenders, "sender", address)
    }

    pub fn check_recipient(&self, address: &Address) -> Result<(), Denial> {
        match &self.recipients {
            Some(list) => list.check(Rule::AllowedRecipients, "recipient", address),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(senders: &[&str], recipients: &[&str]) -> CompiledPolicy {
        let p = SmtpPolicy {
            allowed_senders: senders.iter().map(|s| s.to_string()).collect(),
            allowed_recipients: recipients.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        CompiledPolicy::new(&p, "user@example.test")
    }

    fn sender_ok(p: &CompiledPolicy, a: &str) -> bool {
        Address::parse(a).is_ok_and(|a| p.check_sender(&a).is_ok())
    }

    #[test]
    fn exact_match_is_case_insensitive() {
        let l = policy(&["App@Example.COM"], &[]);
        assert!(sender_ok(&l, "app@example.com"));
        assert!(sender_ok(&l, "APP@EXAMPLE.com."));
        assert!(!sender_ok(&l, "app2@example.com"));
        assert!(!sender_ok(&l, "app@example.com.evil.test"));
    }

    #[test]
    fn domain_wildcard_matches_only_that_domain() {
        let l = policy(&["*@example.com"], &[]);
        assert!(sender_ok(&l, "anyone@EXAMPLE.com"));
        assert!(!sender_ok(&l, "a@sub.example.com"));
        assert!(!sender_ok(&l, "a@example.com.evil"));
        assert!(!sender_ok(&l, "a@xexample.com"));
    }

    #[test]
    fn single_label_domains_match() {
        let l = policy(&["*@intranet"], &[]);
        assert!(sender_ok(&l, "ops@INTRANET"));
        assert!(!sender_ok(&l, "ops@intranet.evil"));
    }

    #[test]
    fn idn_domains_compare_in_ascii_form() {
        let l = policy(&["*@bücher.example"], &[]);
        assert!(sender_ok(&l, "a@xn--bcher-kva.example"));
        assert!(sender_ok(&l, "a@BÜCHER.example"));
        let l = policy(&["*@xn--bcher-kva.example"], &[]);
        assert!(sender_ok(&l, "a@bücher.example"));
        assert!(!sender_ok(&l, "a@bucher.example"));
    }

    #[test]
    fn star_is_any_only_for_recipients() {
        let p = policy(&["*"], &["*"]);
        let a = Address::parse("x@y.test").unwrap();
        assert!(p.check_recipient(&a).is_ok());
        assert!(p.check_sender(&a).is_err());
    }

    #[test]
    fn kelvin_sign_is_not_k() {
        let l = policy(&["kim@example.test"], &[]);
        assert!(!sender_ok(&l, "\u{212A}im@example.test"));
    }

    #[test]
    fn empty_sender_list_means_the_username() {
        let p = CompiledPolicy::new(&SmtpPolicy::default(), "me@example.test");
        assert!(sender_ok(&p, "ME@example.test"));
        let d = p
            .check_sender(&Address::parse("other@example.test").unwrap())
            .unwrap_err();
        assert_eq!(d.rule, Rule::AllowedSenders);
        let r = crate::wire::reply::Reply::from(d);
        assert_eq!((r.code, r.status), (550, "5.7.1"));
        assert!(r.lines[0].contains("smtp.allowedSenders"));
    }

    proptest! {
        /// Matching is invariant under ASCII case changes of the address.
        #[test]
        fn case_never_changes_the_decision(local in "[a-zA-Z0-9_+-]{1,20}", domain in "[a-zA-Z0-9]{1,15}\\.[a-zA-Z]{2,6}", flips in proptest::collection::vec(any::<bool>(), 64)) {
            let addr = format!("{local}@{domain}");
            let flipped: String = addr.chars().zip(flips.iter().cycle()).map(|(c, &f)| if f { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect();
            let exact = policy(&[&addr], &[]);
            let dom = policy(&[&format!("*@{domain}")], &[]);
            prop_assert_eq!(sender_ok(&exact, &addr), sender_ok(&exact, &flipped));
            prop_assert_eq!(sender_ok(&dom, &addr), sender_ok(&dom, &flipped));
            prop_assert!(sender_ok(&exact, &addr));
        }

        /// An address matches a domain pattern only if its domain is that domain.
        #[test]
        fn domain_pattern_is_exact_on_domain(local in "[a-z]{1,8}", d1 in "[a-z]{1,8}\\.test", d2 in "[a-z]{1,8}\\.test") {
            let l = policy(&[&format!("*@{d1}")], &[]);
            prop_assert_eq!(sender_ok(&l, &format!("{local}@{d2}")), d1 == d2);
        }
    }
}
