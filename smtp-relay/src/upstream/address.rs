//! An envelope address as the relay uses it, parsed once per MAIL or RCPT with core's one
//! address parser: the comparable form for the policy, and the form upstream receives (the
//! local part as the application wrote it, the domain in A-labels: no SMTPUTF8 needed).

use std::fmt;

use mailcred_core::policy::{Address, AddressError};

/// A parsed envelope address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayAddress {
    /// Lowercased local part, A-label domain: what the policy compares.
    address: Address,
    /// As the application wrote it: local parts may be case-sensitive upstream.
    local: String,
}

impl RelayAddress {
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let address = Address::parse(text)?;
        let local = text.rsplit_once('@').map(|(l, _)| l).unwrap_or_default();
        Ok(Self {
            address,
            local: local.to_owned(),
        })
    }

    /// The comparable form.
    pub fn address(&self) -> &Address {
        &self.address
    }
}

impl fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.address.domain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_form_keeps_the_local_part_and_uses_a_labels() {
        let a = RelayAddress::parse("APP@BÜCHER.example.").unwrap();
        assert_eq!(a.to_string(), "APP@xn--bcher-kva.example");
        assert_eq!(a.address().local(), "app");
        assert!(
            RelayAddress::parse("ops@intranet").is_ok(),
            "single-label domains"
        );
    }

    #[test]
    fn refusals_name_their_class() {
        assert_eq!(
            RelayAddress::parse("jörg@x.test"),
            Err(AddressError::NonAsciiLocal)
        );
        assert_eq!(
            RelayAddress::parse("x%other@rcpt.test"),
            Err(AddressError::RoutingLocal('%'))
        );
        assert_eq!(
            RelayAddress::parse("other!x@rcpt.test"),
            Err(AddressError::RoutingLocal('!'))
        );
        for bad in [
            "",
            "a@",
            "@b.test",
            "a..b@c.test",
            "\"a b\"@c.test",
            "a@[1.2.3.4]",
            "a@-x.test",
        ] {
            assert!(RelayAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
