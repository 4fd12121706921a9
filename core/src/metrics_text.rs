//! Which exposition format a scraper gets. prometheus-client writes OpenMetrics; Prometheus
//! asks for it, but `promtool check metrics`, older scrapers and `curl` get the classic text
//! format (version 0.0.4) unless their Accept header names OpenMetrics. The conversion is a
//! rewrite of the metadata lines only: sample lines are the same in both formats for the
//! types mailcred uses (counter, gauge, histogram).

/// The exposition format of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Classic,
}

impl Format {
    /// OpenMetrics when the Accept header asks for it, the classic text format otherwise
    /// (what a scraper without an Accept header expects).
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Classic,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// `openmetrics` (prometheus-client's output) in this format.
    pub fn render(self, openmetrics: String) -> String {
        match self {
            Format::OpenMetrics => openmetrics,
            Format::Classic => to_classic(&openmetrics),
        }
    }
}

/// OpenMetrics text to the classic format: counters' HELP and TYPE name the `_total` series,
/// `# UNIT` and `# EOF` go (the classic format has neither).
pub fn to_classic(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS: &str = "# HELP mailcred_kms_decrypts Decryptions.\n\
        # TYPE mailcred_kms_decrypts counter\n\
        mailcred_kms_decrypts_total{result=\"ok\"} 0\n\
        # HELP mailcred_latency_seconds Time.\n\
        # TYPE mailcred_latency_seconds histogram\n\
        # UNIT mailcred_latency_seconds seconds\n\
        mailcred_latency_seconds_sum 0.0\n\
        # HELP mailcred_build_info Build.\n\
        # TYPE mailcred_build_info gauge\n\
        mailcred_build_info{version=\"0.1.0\"} 1\n\
        # EOF\n";

    #[test]
    fn classic_text_names_counters_by_their_series_and_drops_openmetrics_only_lines() {
        let classic = to_classic(OPENMETRICS);
        assert_eq!(
            classic,
            "# HELP mailcred_kms_decrypts_total Decryptions.\n\
             # TYPE mailcred_kms_decrypts_total counter\n\
             mailcred_kms_decrypts_total{result=\"ok\"} 0\n\
             # HELP mailcred_latency_seconds Time.\n\
             # TYPE mailcred_latency_seconds histogram\n\
             mailcred_latency_seconds_sum 0.0\n\
             # HELP mailcred_build_info Build.\n\
             # TYPE mailcred_build_info gauge\n\
             mailcred_build_info{version=\"0.1.0\"} 1\n"
        );
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Classic);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Classic);
        assert_eq!(Format::negotiate(None), Format::Classic);
        assert_eq!(Format::OpenMetrics.render(OPENMETRICS.into()), OPENMETRICS);
    }
}
