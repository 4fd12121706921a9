//! Account-set mode: audit lines and the cost of picking an account per message.

mod support;

use mailcred_core::accounts::AccountDirectory;
use mailcred_smtp::testkit::RecordingUpstream;
use mailcred_smtp::{RelayConfig, RelayMetrics, SmtpRelay};
use support::accounts::*;
use support::app::Client;
use tokio_util::sync::CancellationToken;

/// Audit lines name the account's credential; neither the token nor the upstream passwords
/// appear in any log line.
#[tokio::test]
async fn audit_lines_name_the_account() {
    let logs = mailcred_core::testkit::CapturedLogs::start();
    let dir = directory();
    let relay = start(dir.clone()).await;
    for name in ["alice", "bob"] {
        let mut c = Client::connect(relay.addr).await;
        assert!(c.cmd("EHLO app").await.starts_with("250"));
        assert!(auth_plain(&mut c, name, TOKEN).await.starts_with("235"));
        assert!(
            send(&mut c, &format!("{name}@example.test"))
                .await
                .starts_with("250")
        );
        if name == "bob" {
            dir.remove("bob");
            assert!(
                c.cmd("MAIL FROM:<bob@example.test>")
                    .await
                    .starts_with("454")
            );
        }
        assert!(c.cmd("QUIT").await.starts_with("221"));
    }
    let mut c = Client::connect(relay.addr).await;
    assert_eq!(auth_plain(&mut c, "alice", "wrong").await, FAILED);
    drop(relay);
    let text = logs.text_with_audit_lines(3).await;
    let audits = logs.audit_lines();
    let seen: Vec<_> = audits
        .iter()
        .map(|a| {
            (
                a["credential"].as_str().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ns/alice", "relayed"),
            ("ns/bob", "relayed"),
            ("ns/bob", "temporary_failure")
        ],
        "{text}"
    );
    assert_eq!(audits[2]["reason"], "account_unavailable");
    for secret in [
        TOKEN,
        "upstream-password-of-alice",
        "upstream-password-of-bob",
    ] {
        assert!(!text.contains(secret), "{secret} in the logs");
    }
    assert!(!text.contains(&plain("", "alice", TOKEN)));
}

/// CPU time of this process so far (user + system), in clock ticks of 10 ms.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Messages per second over one authenticated connection, by the wall clock and by the
/// process's CPU time (relay and client both: the client's share is the same in both
/// modes): the relay of one credential, and the relay of an account set (one directory
/// lookup per MAIL and per EHLO more).
async fn messages_per_second(account_mode: bool, messages: usize) -> (f64, f64) {
    let dir = directory();
    let relay = if account_mode {
        start(dir).await
    } else {
        let recorder = RecordingUpstream::default();
        let metrics = RelayMetrics::unregistered();
        let config = RelayConfig {
            local_token: Some(TOKEN.into()),
            ..RelayConfig::default()
        };
        let source = dir.account("alice").unwrap();
        let relay = SmtpRelay::with_upstream(config, source, metrics.clone(), recorder.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(relay.serve(listener, stop.clone()));
        Relay {
            addr,
            recorder,
            metrics,
            _stop: stop.drop_guard(),
        }
    };
    let mut c = Client::connect(relay.addr).await;
    assert!(c.cmd("EHLO app").await.starts_with("250"));
    assert!(auth_plain(&mut c, "alice", TOKEN).await.starts_with("235"));
    let (started, cpu) = (std::time::Instant::now(), cpu_ticks());
    for _ in 0..messages {
        assert!(send(&mut c, "alice@example.test").await.starts_with("250"));
    }
    let wall = messages as f64 / started.elapsed().as_secs_f64();
    let cpu = messages as f64 / ((cpu_ticks() - cpu).max(1) as f64 / 100.0);
    assert_eq!(relay.recorder.sent().len(), messages);
    (wall, cpu)
}

/// Issue 13's throughput figure for the front-end: account selection costs at most 5%
/// per message. Judged by CPU time (a machine shared with other builds makes the wall clock
/// swing by 2x); best of alternating runs.
#[tokio::test]
#[ignore = "a measurement: cargo test -p mailcred-smtp --test accounts_audit -- --ignored --nocapture"]
async fn account_selection_costs_under_five_percent_per_message() {
    let (mut single, mut accounts) = ((0f64, 0f64), (0f64, 0f64));
    for round in 0..4 {
        // Alternate which goes first: the machine's load drifts.
        for account_mode in [round % 2 == 0, round % 2 == 1] {
            let (wall, cpu) = messages_per_second(account_mode, 10_000).await;
            let best = if account_mode {
                &mut accounts
            } else {
                &mut single
            };
            *best = (best.0.max(wall), best.1.max(cpu));
        }
    }
    let ratio = accounts.1 / single.1;
    println!(
        "single credential: {:.0} msg/s wall, {:.0} msg/s per CPU second; account set: {:.0} msg/s wall, {:.0} msg/s per CPU second; CPU ratio {ratio:.3}",
        single.0, single.1, accounts.0, accounts.1
    );
    assert!(ratio >= 0.95, "ratio {ratio:.3}");
}
