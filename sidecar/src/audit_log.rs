//! The audit stream: every event on the `audit` tracing target becomes one JSON line on
//! stdout, whatever `RUST_LOG` says. It is its own layer with its own filter (the target,
//! exactly), so `RUST_LOG=warn` or `off` silences the diagnostics, never the audit trail.
//! The schema is documented field by field in docs/audit.md.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::{Context, Layer};

/// The tracing target of audit events (smtp-relay and imap-proxy write to it).
pub const AUDIT_TARGET: &str = "audit";

/// Fields the front-ends hand over as JSON text (a list of mailboxes, counts by command):
/// written as JSON values, not as strings holding JSON.
const JSON_FIELDS: &[&str] = &["mailboxes", "commands"];

/// Whether an event belongs to the audit stream (and not to the diagnostic log).
pub fn is_audit(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() == AUDIT_TARGET
}

/// Writes each audit event as one JSON object line to `W`.
pub struct AuditLayer<W> {
    writer: W,
}

impl<W> AuditLayer<W> {
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

impl<S, W> Layer<S> for AuditLayer<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut record = Map::new();
        let mut timestamp = String::new();
        if SystemTime
            .format_time(&mut Writer::new(&mut timestamp))
            .is_ok()
        {
            record.insert("timestamp".into(), timestamp.into());
        }
        record.insert("level".into(), event.metadata().level().as_str().into());
        record.insert("target".into(), AUDIT_TARGET.into());
        event.record(&mut Fields(&mut record));
        let Ok(mut line) = serde_json::to_vec(&record) else {
            return;
        };
        line.push(b'\n');
        // One write per line: concurrent sessions never interleave inside a record.
        let _ = self.writer.make_writer().write_all(&line);
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn text(&mut self, field: &Field, text: String) {
        let value = if JSON_FIELDS.contains(&field.name()) {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        } else {
            Value::String(text)
        };
        self.0.insert(field.name().into(), value);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.text(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    /// The subscriber main.rs builds, with `rust_log` as RUST_LOG and buffers for outputs.
    fn capture(rust_log: &str, emit: impl FnOnce()) -> (String, String) {
        let (audit, diag) = (Buffer::default(), Buffer::default());
        let subscriber = tracing_subscriber::registry()
            .with(crate::diagnostic_layer(
                EnvFilter::new(rust_log),
                diag.clone(),
            ))
            .with(AuditLayer::new(audit.clone()).with_filter(filter_fn(is_audit)));
        tracing::subscriber::with_default(subscriber, emit);
        let text =
            |b: Buffer| String::from_utf8(b.0.lock().expect("buffer").clone()).expect("utf-8");
        (text(audit), text(diag))
    }

    #[test]
    fn audit_lines_survive_any_rust_log_and_never_reach_the_diagnostic_log() {
        for rust_log in ["off", "warn", "error", "audit=off", "info", "trace"] {
            let (audit, diag) = capture(rust_log, || {
                tracing::info!(target: "audit", protocol = "smtp", outcome = "relayed", "message");
                tracing::warn!("a diagnostic warning");
            });
            let lines: Vec<Value> = audit
                .lines()
                .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
                .collect();
            assert_eq!(lines.len(), 1, "RUST_LOG={rust_log}: {audit}");
            assert_eq!(lines[0]["outcome"], "relayed");
            assert_eq!(lines[0]["target"], "audit");
            assert!(lines[0]["timestamp"].is_string());
            assert!(
                !diag.contains("relayed"),
                "RUST_LOG={rust_log}: audit in diag: {diag}"
            );
            assert_eq!(
                diag.contains("a diagnostic warning"),
                ["warn", "info", "trace"].contains(&rust_log),
                "RUST_LOG={rust_log}: {diag}"
            );
        }
    }

    #[test]
    fn json_fields_are_values_not_strings() {
        let (audit, _) = capture("off", || {
            tracing::info!(
                target: "audit",
                mailboxes = %r#"["INBOX","Sent"]"#,
                commands = %r#"{"select":2}"#,
                sender = "[not json]",
                duration_ms = 12u64,
            );
        });
        let line: Value = serde_json::from_str(audit.trim()).expect("JSON");
        assert_eq!(line["mailboxes"], serde_json::json!(["INBOX", "Sent"]));
        assert_eq!(line["commands"]["select"], 2);
        assert_eq!(line["sender"], "[not json]");
        assert_eq!(line["duration_ms"], 12);
    }

    /// docs/audit.md lists every outcome and reason the front-ends can write.
    #[test]
    fn the_audit_schema_documents_every_fixed_outcome_and_reason() {
        let doc = include_str!("../../docs/audit.md");
        let mut values: Vec<&str> = Vec::new();
        values.extend(mailcred_smtp::Outcome::ALL.map(|o| o.as_str()));
        values.extend(mailcred_smtp::policy::Rule::ALL.map(|r| r.as_str()));
        values.extend(mailcred_imap::outcome::Outcome::FIXED.map(|o| o.as_str()));
        values.extend(mailcred_imap::outcome::Reason::FIXED.map(|r| r.as_str()));
        values.extend(["smtp_message", "imap_session", "imap_denied", "denied"]);
        let missing: Vec<&str> = values
            .into_iter()
            .filter(|v| !doc.contains(&format!("`{v}`")))
            .collect();
        assert!(missing.is_empty(), "docs/audit.md lacks {missing:?}");
    }
}
