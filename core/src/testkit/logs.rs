//! Log capture for tests that assert on log lines (audit lines, no secret in any line).
//!
//! Why not a `set_default` subscriber per test: tracing-core caches each callsite's interest
//! the first time the callsite is hit. While exactly one `Dispatch` exists in the process, it
//! asks the *hitting thread's* default (tokio-rs/tracing#3611, #2874). A test running in
//! parallel without a subscriber that reaches a callsite first (the relay's one audit
//! `info!`) caches `Interest::never` for it, and the capturing test then never sees that
//! event: `audit_lines_name_the_account` failed so, about 1 run in 15.
//!
//! So there is one global subscriber per test binary, installed on first use and never
//! replaced, whose layers are dynamically filtered (interest `sometimes`, never cached as
//! `never`) and write into the capture of the thread the event happens on. A test's tasks
//! must therefore run on the test's thread: a current-thread runtime (`#[tokio::test]`'s
//! default), which `start` checks.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once, OnceLock, PoisonError};
use std::time::Duration;

use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// How a capture writes its lines.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogFormat {
    /// One flattened JSON object per event (fields beside `message`, `target`, `level`).
    Json,
    /// tracing-subscriber's default text format.
    Text,
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn bytes(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

thread_local! {
    /// The capture events on this thread go to, if any.
    static CURRENT: RefCell<Option<(LogFormat, Buffer)>> = const { RefCell::new(None) };
}

fn current_format() -> Option<LogFormat> {
    CURRENT.with(|c| c.borrow().as_ref().map(|(format, _)| *format))
}

/// Where the events of one format go: the current thread's capture of that format, and the
/// whole process's capture (JSON only) once `process_logs` was called. The fmt layer writes on
/// the event's thread, so the thread-local is the event's.
#[derive(Clone, Copy)]
struct Route(LogFormat);

impl Route {
    fn wanted(self) -> bool {
        current_format() == Some(self.0) || (self.0 == LogFormat::Json && PROCESS.get().is_some())
    }
}

struct Targets(Vec<Buffer>);

impl Write for Targets {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        for buffer in &mut self.0 {
            buffer.write_all(b)?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Route {
    type Writer = Targets;
    fn make_writer(&'a self) -> Targets {
        let mut targets: Vec<Buffer> = CURRENT.with(|c| match c.borrow().as_ref() {
            Some((format, buffer)) if *format == self.0 => vec![buffer.clone()],
            _ => Vec::new(),
        });
        if self.0 == LogFormat::Json
            && let Some(process) = PROCESS.get()
        {
            targets.push(process.buffer.clone());
        }
        Targets(targets)
    }
}

/// Installs the binary's one subscriber (and the `log` bridge, for rustls' records).
fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let json = fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(Route(LogFormat::Json))
            .with_filter(dynamic_filter_fn(|_, _| Route(LogFormat::Json).wanted()));
        let text = fmt::layer()
            .with_ansi(false)
            .with_writer(Route(LogFormat::Text))
            .with_filter(dynamic_filter_fn(|_, _| Route(LogFormat::Text).wanted()));
        if let Err(e) = tracing_subscriber::registry()
            .with(json)
            .with(text)
            .try_init()
        {
            panic!("CapturedLogs needs to be the test binary's only global subscriber: {e}");
        }
    });
}

static PROCESS: OnceLock<ProcessLogs> = OnceLock::new();

/// Every event of every thread of this test binary from the first call on, as flattened JSON
/// lines: for tests whose sessions run on other threads, and for "no secret in any line the
/// binary logged" checks that should see the other tests' lines too.
pub fn process_logs() -> &'static ProcessLogs {
    let logs = PROCESS.get_or_init(|| ProcessLogs {
        buffer: Buffer::default(),
    });
    install();
    logs
}

pub struct ProcessLogs {
    buffer: Buffer,
}

impl ProcessLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.bytes()).into_owned()
    }

    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        audit_lines(&self.text())
    }
}

/// The audit lines (`"target":"audit"`) of JSON lines, parsed.
fn audit_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect()
}

/// Every event at any level on this thread, while this lives. Like `set_default`, a newer
/// capture on the same thread takes over until it is dropped, then the older one resumes.
pub struct CapturedLogs {
    buffer: Buffer,
    previous: Option<(LogFormat, Buffer)>,
}

impl CapturedLogs {
    /// Flattened JSON lines (`audit_lines` reads them).
    pub fn start() -> Self {
        Self::with_format(LogFormat::Json)
    }

    pub fn with_format(format: LogFormat) -> Self {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            assert!(
                handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread,
                "CapturedLogs captures the test's thread: use a current-thread runtime"
            );
        }
        install();
        let buffer = Buffer::default();
        let previous = CURRENT.with(|c| c.replace(Some((format, buffer.clone()))));
        Self { buffer, previous }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.bytes()).into_owned()
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

    /// The audit lines (`"target":"audit"`) of a JSON capture, parsed.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        audit_lines(&self.text())
    }
}

impl Drop for CapturedLogs {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| c.replace(previous));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One callsite, hit from two threads.
    fn audit(n: u32) {
        tracing::info!(target: "audit", n, "message");
    }

    /// The failure the global router exists for: a thread without a capture reaches the
    /// callsite first, while exactly one capture is alive; the capture still sees the event.
    #[test]
    fn a_callsite_first_hit_elsewhere_is_still_captured() {
        let logs = CapturedLogs::start();
        std::thread::spawn(|| audit(1))
            .join()
            .expect("the other thread ran");
        audit(2);
        let lines = logs.audit_lines();
        assert_eq!(lines.len(), 1, "{}", logs.text());
        assert_eq!(lines[0]["n"], 2);
    }

    #[test]
    fn captures_are_per_thread_and_end_with_the_value() {
        let text = std::thread::spawn(|| {
            let logs = CapturedLogs::with_format(LogFormat::Text);
            tracing::warn!(secret_free = true, "on the other thread");
            logs.text()
        })
        .join()
        .expect("the other thread ran");
        assert!(text.contains("on the other thread"), "{text}");
        assert!(text.contains("secret_free=true"), "{text}");
        let outer = CapturedLogs::start();
        let inner = CapturedLogs::start();
        tracing::info!("inner");
        let inner_text = inner.text();
        drop(inner);
        tracing::info!("outer");
        assert!(inner_text.contains("inner") && !inner_text.contains("outer"));
        assert!(outer.text().contains("outer") && !outer.text().contains("inner"));
        drop(outer);
        tracing::info!("after the capture");
        let logs = CapturedLogs::start();
        assert_eq!(logs.text(), "");
    }

    #[test]
    fn the_process_capture_sees_every_thread() {
        let process = process_logs();
        std::thread::spawn(|| tracing::info!(target: "audit", thread = "other", "message"))
            .join()
            .expect("the other thread ran");
        let mine = CapturedLogs::with_format(LogFormat::Text);
        tracing::info!(target: "audit", thread = "test", "message");
        let threads: Vec<_> = process
            .audit_lines()
            .iter()
            .filter_map(|l| l["thread"].as_str().map(str::to_owned))
            .collect();
        assert!(threads.contains(&"other".to_owned()), "{}", process.text());
        assert!(threads.contains(&"test".to_owned()), "{}", process.text());
        assert!(mine.text().contains("thread=\"test\""), "{}", mine.text());
    }
}
