//! Memory of an account set (issue 13, bench/): loads N account outlines (generated, sealed
//! MailCredentials, default 10,000) into an `AccountSet` and prints the process RSS before and
//! after, then decrypts M of them (LocalKms, default 1,000) into the cache and prints the RSS
//! increase per cached plaintext. Goals: <= 64 MiB with 10,000 outlines, <= 4 KiB per cached
//! plaintext. Same allocator as the sidecar (zeroizing).
//!
//! `cargo run --release -p mailcred-sidecar --example accounts_rss [-- OUTLINES CACHED]`

// The sidecar's source module, compiled in here (the sidecar is a binary crate).
#[allow(dead_code)]
#[path = "../src/source/mod.rs"]
mod source;

use std::time::{Duration, Instant};

use mailcred_core::kms::LocalKms;
use mailcred_core::testkit::TestCredential;
use source::SourceMetrics;
use source::accounts::{AccountSet, AccountSetConfig, AccountSetMetrics};

#[global_allocator]
static ALLOCATOR: secmem_alloc::zeroizing_alloc::ZeroizeAlloc<std::alloc::System> =
    secmem_alloc::zeroizing_alloc::ZeroizeAlloc::new(std::alloc::System);

/// VmRSS of this process, in KiB, after returning freed heap to the system.
fn rss_kib() -> u64 {
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe { libc::malloc_trim(0) };
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let outlines: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let cached: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let kms = std::sync::Arc::new(LocalKms::generate().expect("a local key"));
    let before = rss_kib();

    let set = AccountSet::new(
        AccountSetConfig {
            set: "crm".into(),
            namespace: "bench".into(),
            service_account: "app".into(),
            ttl: Duration::from_secs(900),
            cache_size: cached.max(1),
        },
        AccountSetMetrics {
            source: SourceMetrics::default(),
            ..AccountSetMetrics::default()
        },
    );
    set.attach(kms.clone(), None);
    let started = Instant::now();
    for i in 0..outlines {
        let resource = TestCredential::new("bench", &format!("account-{i:05}"))
            .account_set("crm")
            .username(&format!("user{i:05}@example.test"))
            .sealed(kms.as_ref(), &format!("password-{i:05}-xxxxxxxxxxxxxxxx"))
            .await;
        set.apply(resource);
    }
    let loaded = rss_kib();
    let load_time = started.elapsed();

    let started = Instant::now();
    for i in 0..cached.min(outlines) {
        let c = set
            .credential(&format!("account-{i:05}"))
            .await
            .expect("decrypts");
        drop(c);
    }
    let decrypt_time = started.elapsed();
    let with_plaintexts = rss_kib();
    let per_outline = (loaded.saturating_sub(before)) as f64 * 1024.0 / outlines.max(1) as f64;
    let per_plaintext =
        (with_plaintexts.saturating_sub(loaded)) as f64 * 1024.0 / cached.max(1) as f64;
    println!("accounts_rss: {outlines} outlines, {cached} cached plaintexts");
    println!("  rss before set          {:8.1} MiB", mib(before));
    println!(
        "  rss with outlines       {:8.1} MiB  (+{:.1} MiB, {:.0} B/outline, loaded in {:.2?})",
        mib(loaded),
        mib(loaded - before.min(loaded)),
        per_outline,
        load_time
    );
    println!(
        "  rss with plaintexts     {:8.1} MiB  (+{:.0} B/cached plaintext, decrypted in {:.2?})",
        mib(with_plaintexts),
        per_plaintext,
        decrypt_time
    );
    println!(
        "  accounts={} cached={} goals: total <= 64 MiB: {}, <= 4 KiB per plaintext: {}",
        set.len(),
        set.cached_plaintexts(),
        if mib(loaded) <= 64.0 { "met" } else { "MISSED" },
        if per_plaintext <= 4096.0 {
            "met"
        } else {
            "MISSED"
        },
    );
}
