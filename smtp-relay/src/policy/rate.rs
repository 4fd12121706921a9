//! Token buckets of one credential, shared by all connections (messages and recipients per
//! minute and per hour).

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use mailcred_core::crd::RateLimits;

use super::Rule;

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

    #[test]
    fn rate_refuses_after_burst_and_names_rule() {
        let r = RateLimiters::new(&RateLimits {
            messages_per_minute: Some(2),
            ..Default::default()
        });
        assert!(r.take(1).is_ok());
        assert!(r.take(1).is_ok());
        assert_eq!(r.take(1), Err(Rule::MessagesPerMinute));
        let reply = crate::wire::reply::Reply::from(super::super::Denial::new(
            Rule::MessagesPerMinute,
            "x",
        ));
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
}
