//! Log capture for audit tests: a JSON subscriber over a shared buffer, set as the thread's
//! default for the life of the value.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every event at any level, as flattened JSON lines, while this lives.
pub struct CapturedLogs {
    buffer: Buffer,
    _guard: tracing::subscriber::DefaultGuard,
}

impl CapturedLogs {
    pub fn start() -> Self {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        Self {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.buffer.0.lock().unwrap().clone()).unwrap()
    }

    /// The text once it holds at least `n` audit lines (or after 5 s): a session writes its
    /// audit line after its last reply, so the test may get there first.
    pub async fn text_with_audit_lines(&self, n: usize) -> String {
        for _ in 0..200 {
            if self.audit_lines().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.text()
    }

    /// The audit lines (`"target":"audit"`), parsed.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "audit")
            .collect()
    }
}
