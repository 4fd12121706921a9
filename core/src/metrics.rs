//! Prometheus helpers for every crate that exports metrics (feature `metrics`): fixed label
//! values present at zero from the start, and the scrape answer in the format asked for.

use std::hash::Hash;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::metrics_text::Format;

/// Creates each of `labels` in `family` at 0: rate() and increase() then see the first event,
/// which a series that appears with it would hide.
pub fn zero_initialise<L: Clone + Hash + Eq>(
    family: &Family<L, Counter>,
    labels: impl IntoIterator<Item = L>,
) {
    for label in labels {
        family.get_or_create(&label).inc_by(0);
    }
}

/// `registry` as a scrape answer: the content type and the text, in the format the `Accept`
/// header value `accept` asks for ([`Format::negotiate`]).
pub fn scrape(
    registry: &Registry,
    accept: Option<&str>,
) -> Result<(&'static str, String), std::fmt::Error> {
    let format = Format::negotiate(accept);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok((format.content_type(), format.render(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
    struct Outcome {
        outcome: &'static str,
    }

    #[test]
    fn zeroed_labels_are_scraped_in_the_format_asked_for() {
        let family = Family::<Outcome, Counter>::default();
        zero_initialise(&family, ["ok", "denied"].map(|outcome| Outcome { outcome }));
        let mut registry = Registry::default();
        registry.register("sessions", "Sessions", family);

        let (content_type, text) = scrape(&registry, None).expect("encodes");
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert!(text.contains("sessions_total{outcome=\"ok\"} 0"), "{text}");
        assert!(
            text.contains("sessions_total{outcome=\"denied\"} 0"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");

        let (content_type, text) =
            scrape(&registry, Some("application/openmetrics-text")).expect("encodes");
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
