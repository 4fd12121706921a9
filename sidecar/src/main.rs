//! mailcred-sidecar: serves SMTP and IMAP on loopback to the application of its pod,
//! with the MailCredential's password decrypted on demand and never shown to the application.

mod admin;
mod audit_log;
mod cli;
mod harden;
mod listen;
mod plan;
mod probe;
mod registration;
mod runtime;
mod source;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::audit_log::{AuditLayer, is_audit};

/// Every heap block is zeroed when freed. The password's own buffers are zeroized by their
/// types; this covers the copies that dependencies make and free without zeroizing (lettre's
/// `Credentials` and AUTH line, base64 encodings, TLS plaintext buffers). Checked by
/// e2e/hygiene/check-memory.py; the cost is measured in bench/smtp.
// `bench-plain-allocator` exists only so bench/smtp can measure this allocator's cost against
// the plain one in the same run; images and the chart never build it.
#[cfg(not(feature = "bench-plain-allocator"))]
#[global_allocator]
static ALLOCATOR: secmem_alloc::zeroizing_alloc::ZeroizeAlloc<std::alloc::System> =
    secmem_alloc::zeroizing_alloc::ZeroizeAlloc::new(std::alloc::System);

/// How often freed heap is handed back to the kernel (see [`trim_heap`]).
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> std::process::ExitCode {
    compact_heap();
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(mailcred_core::sidecar_contract::PROBE_SUBCOMMAND) {
        return probe::run(&argv[2..]);
    }
    let rust_log = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(diagnostic_layer(rust_log, std::io::stdout))
        // The audit trail has its own filter: RUST_LOG cannot switch it off.
        .with(AuditLayer::new(std::io::stdout).with_filter(filter_fn(is_audit)))
        .init();
    // Before anything can hold a password: no core dumps, no same-uid ptrace.
    if let Err(e) = harden::disable_core_dumps() {
        tracing::error!(error = %e, "cannot disable core dumps; refusing to run");
        return std::process::ExitCode::FAILURE;
    }
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        tracing::warn!("a rustls crypto provider was already installed");
    }
    let args = cli::Args::parse();
    // Every argument is checked before anything is bound, read or asked of a cloud SDK.
    let plan = match plan::Plan::from_args(&args) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!(error = %e, "invalid arguments");
            return std::process::ExitCode::from(2);
        }
    };
    // One thread: a loopback proxy for one pod is I/O-bound, and the multi-thread runtime's
    // workers, their arenas and wakeups cost memory without adding throughput (bench/README.md).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        tokio::spawn(trim_heap());
        runtime::run(args, plan, shutdown).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "mailcred sidecar failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The diagnostic log: JSON lines, as RUST_LOG (`rust_log`) selects, audit events excluded
/// (the audit layer writes those).
pub(crate) fn diagnostic_layer<S, W>(rust_log: EnvFilter, writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // lettre logs every SMTP line it writes at DEBUG, AUTH (base64 password) and message
    // content included: nothing from it below INFO is ever written, whatever RUST_LOG says.
    let never_below_info = filter_fn(|meta| {
        !(meta.target().starts_with("lettre") && *meta.level() > tracing::Level::INFO)
    });
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(writer)
        .with_filter(
            rust_log
                .and(never_below_info)
                .and(filter_fn(|meta| !is_audit(meta))),
        )
}

/// SIGTERM (Kubernetes) or SIGINT: stop accepting, finish in-flight messages.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}

/// The sidecar runs in every pod, so its idle memory is paid per pod. One glibc arena: the
/// few threads (runtime, blocking pool) share it instead of each keeping its own free lists.
fn compact_heap() {
    // SAFETY: mallopt only changes allocator tuning; called before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

/// glibc keeps freed heap pages mapped: after a burst (100 connections) RSS stays at the peak.
/// malloc_trim returns free pages to the kernel (they were zeroed when freed, see ALLOCATOR);
/// on a heap of a few MiB it takes microseconds.
async fn trim_heap() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // SAFETY: malloc_trim only releases free memory; it is thread-safe.
        unsafe { libc::malloc_trim(0) };
    }
}
