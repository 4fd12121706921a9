//! Logging: JSON lines by default (one object per event, for log pipelines), text for humans.
//! `RUST_LOG` overrides the default filter.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The filter for `--log-level`: the kube client's chatter stays at warn unless asked for.
pub fn directives(log_level: &str) -> String {
    if log_level.contains("kube") {
        log_level.to_string()
    } else {
        format!("{log_level},kube=warn,kube_lease_manager=warn")
    }
}

pub fn init(format: LogFormat, log_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives(log_level)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn kube_stays_at_warn_unless_named() {
        assert_eq!(
            super::directives("debug"),
            "debug,kube=warn,kube_lease_manager=warn"
        );
        assert_eq!(super::directives("info,kube=debug"), "info,kube=debug");
    }
}
