//! The one parser of mail addresses and sender/recipient patterns. The operator's validation,
//! `kubectl mailcred seal` and the SMTP relay all use it, so a pattern that is accepted anywhere
//! matches in the relay exactly as it reads.
//!
//! Strict on purpose: an address the policy cannot reason about (a quoted or non-ASCII local
//! part, an address literal, `%`/`!` source routing) is refused, never guessed at. Comparison
//! folds ASCII case only: Unicode folding would let U+212A KELVIN SIGN stand for `k`.

use std::fmt;

/// RFC 5321 §4.5.3.1: 64 octets of local part, 255 of domain.
const MAX_LOCAL_LEN: usize = 64;
const MAX_DOMAIN_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;
/// Longest pattern accepted (local part + `@` + domain).
pub const MAX_PATTERN_LEN: usize = 320;

/// Where a pattern is used: only recipients may be the lone wildcard `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressRole {
    Sender,
    Recipient,
}

/// Why an address or pattern is refused. `Display` says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressError {
    TooLong,
    NoAt,
    EmptyLocal,
    LocalTooLong,
    /// Non-ASCII local parts need SMTPUTF8, which mailcred does not offer.
    NonAsciiLocal,
    /// `%` or `!`: source routing through the allowed domain.
    RoutingLocal(char),
    BadLocalChar(char),
    /// Leading, trailing or doubled `.` in the local part.
    BadLocalDots,
    EmptyDomain,
    AddressLiteral,
    DomainTooLong,
    EmptyLabel(String),
    LabelTooLong(String),
    LabelHyphen(String),
    BadDomainChar(String, char),
    /// Passes the character rules but not IDNA (UTS #46, STD3).
    BadIdn,
    LoneStarSender,
    StarInLocal,
    StarInDomain,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use AddressError::*;
        match self {
            TooLong => write!(f, "longer than {MAX_PATTERN_LEN} bytes"),
            NoAt => write!(f, "expected `user@domain` or `*@domain`"),
            EmptyLocal => write!(f, "the part before `@` is empty"),
            LocalTooLong => write!(
                f,
                "the part before `@` is longer than {MAX_LOCAL_LEN} bytes"
            ),
            NonAsciiLocal => write!(
                f,
                "the part before `@` is not ASCII; SMTPUTF8 is not offered, so such an address cannot be relayed"
            ),
            RoutingLocal(c) => write!(
                f,
                "the part before `@` contains {c:?} (source routing through another host is refused)"
            ),
            BadLocalChar(c) => write!(f, "the part before `@` contains {c:?}"),
            BadLocalDots => write!(
                f,
                "the part before `@` starts or ends with `.` or has `..` (quoted local parts are not supported)"
            ),
            EmptyDomain => write!(f, "the domain after `@` is empty"),
            AddressLiteral => write!(f, "address literals like `[192.0.2.1]` are not supported"),
            DomainTooLong => write!(f, "the domain is longer than {MAX_DOMAIN_LEN} bytes"),
            EmptyLabel(d) => write!(f, "the domain {d:?} has an empty label"),
            LabelTooLong(d) => write!(
                f,
                "the domain {d:?} has a label longer than {MAX_LABEL_LEN} bytes"
            ),
            LabelHyphen(d) => write!(
                f,
                "the domain {d:?} has a label that starts or ends with `-`"
            ),
            BadDomainChar(d, c) => write!(f, "the domain {d:?} contains {c:?}"),
            BadIdn => write!(f, "the domain is not a valid internationalized domain name"),
            LoneStarSender => write!(
                f,
                "a lone `*` is not allowed for senders (it would let the application send as anyone); use `*@domain`"
            ),
            StarInLocal => write!(
                f,
                "`*` may only stand alone before `@` (as in `*@example.com`)"
            ),
            StarInDomain => write!(
                f,
                "wildcards are not allowed in the domain (subdomains are not matched); list each domain as `*@domain`"
            ),
        }
    }
}

impl std::error::Error for AddressError {}

/// A mailbox address in comparable form: ASCII local part lowercased, the domain as lowercase
/// ASCII (IDNA A-labels, no trailing dot).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    local: String,
    domain: String,
}

impl Address {
    /// Parses a bare `local@domain` (no angle brackets, no display name).
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        if text.len() > MAX_PATTERN_LEN {
            return Err(AddressError::TooLong);
        }
        let (local, domain) = text.rsplit_once('@').ok_or(AddressError::NoAt)?;
        check_local(local)?;
        Ok(Self {
            local: local.to_ascii_lowercase(),
            domain: normalize_domain(domain)?,
        })
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain in ASCII form, as the relay hands it upstream (no SMTPUTF8 needed).
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// RFC 5322 `atext` minus the routing characters; dots only between atoms (dot-atom).
fn check_local(local: &str) -> Result<(), AddressError> {
    if local.is_empty() {
        return Err(AddressError::EmptyLocal);
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(AddressError::LocalTooLong);
    }
    if let Some(c) = local.chars().find(|c| !c.is_ascii()) {
        return Err(if c.is_whitespace() || c.is_control() {
            AddressError::BadLocalChar(c)
        } else {
            AddressError::NonAsciiLocal
        });
    }
    for c in local.chars() {
        match c {
            '%' | '!' => return Err(AddressError::RoutingLocal(c)),
            '*' => return Err(AddressError::StarInLocal),
            c if c.is_ascii_alphanumeric() || "#$&'+-/=?^_`{|}~.".contains(c) => {}
            c => return Err(AddressError::BadLocalChar(c)),
        }
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(AddressError::BadLocalDots);
    }
    Ok(())
}

/// Lowercase A-label form. Single-label domains (`intranet`) are accepted: company relays
/// use them, and whatever the operator accepts must match in the relay.
pub fn normalize_domain(domain: &str) -> Result<String, AddressError> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() {
        return Err(AddressError::EmptyDomain);
    }
    if domain.starts_with('[') {
        return Err(AddressError::AddressLiteral);
    }
    if domain.contains('*') {
        return Err(AddressError::StarInDomain);
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(AddressError::DomainTooLong);
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(AddressError::EmptyLabel(domain.to_owned()));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(AddressError::LabelTooLong(domain.to_owned()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AddressError::LabelHyphen(domain.to_owned()));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_alphanumeric() || *c == '-')) {
            return Err(AddressError::BadDomainChar(domain.to_owned(), c));
        }
    }
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| AddressError::BadIdn)?;
    if ascii.is_empty() || ascii.len() > MAX_DOMAIN_LEN {
        return Err(AddressError::BadIdn);
    }
    Ok(ascii)
}

/// One allow-list entry: `user@domain`, `*@domain`, or (recipients only) `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressPattern {
    Exact(Address),
    Domain(String),
    Any,
}

impl AddressPattern {
    pub fn parse(text: &str, role: AddressRole) -> Result<Self, AddressError> {
        if text == "*" {
            return match role {
                AddressRole::Recipient => Ok(Self::Any),
                AddressRole::Sender => Err(AddressError::LoneStarSender),
            };
        }
        if text.len() > MAX_PATTERN_LEN {
            return Err(AddressError::TooLong);
        }
        if let Some(domain) = text.strip_prefix("*@") {
            return normalize_domain(domain).map(Self::Domain);
        }
        Address::parse(text).map(Self::Exact)
    }

    pub fn matches(&self, address: &Address) -> bool {
        match self {
            Self::Any => true,
            Self::Domain(d) => *d == address.domain,
            Self::Exact(e) => e == address,
        }
    }
}

/// An allow-list entry that does not parse, with its position.
pub type PatternListError = super::ListEntryError<AddressError>;

/// A compiled allow-list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPatterns {
    patterns: Vec<AddressPattern>,
}

impl AddressPatterns {
    /// Every entry must parse: a list with an entry the relay could not match is refused
    /// whole, with that entry named, instead of silently allowing less.
    pub fn parse_all<S: AsRef<str>>(
        entries: &[S],
        role: AddressRole,
    ) -> Result<Self, PatternListError> {
        let patterns = super::parse_list(entries, |entry| AddressPattern::parse(entry, role))?;
        Ok(Self { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn allows(&self, address: &Address) -> bool {
        self.patterns.iter().any(|p| p.matches(address))
    }
}

#[cfg(test)]
#[path = "address_tests.rs"]
mod tests;
