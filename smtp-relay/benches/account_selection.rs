//! Issue 13's front-end figure: what picking an account per message costs, as a ratio of
//! messages per CPU second against the single-credential relay in the same run. A measurement,
//! not a test: `cargo bench -p mailcred-smtp --bench account_selection [-- MESSAGES ROUNDS]`.
//! The goal (a ratio of at least 0.95) is judged in bench/README-accounts.md, never asserted.

#[path = "../tests/support/mod.rs"]
mod support;

use mailcred_core::accounts::AccountDirectory;
use mailcred_smtp::RelayConfig;
use support::accounts::*;
use support::app::{self, Client};

/// CPU time of this process so far (user + system), in clock ticks of 10 ms.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let tick = |i: usize| fields[i].parse::<u64>().expect("a tick count");
    tick(11) + tick(12)
}

/// Messages per second over one authenticated connection, by the wall clock and by the
/// process's CPU time (relay and client both: the client's share is the same in both modes).
async fn messages_per_second(account_mode: bool, messages: usize) -> (f64, f64) {
    // Either relay stays up while `_relay` lives.
    let (addr, recorder, _relay): (_, _, Box<dyn std::any::Any>) = if account_mode {
        let relay = start(directory()).await;
        (relay.addr, relay.recorder.clone(), Box::new(relay))
    } else {
        let config = RelayConfig {
            local_token: Some(TOKEN.into()),
            ..RelayConfig::default()
        };
        let source = directory()
            .account("alice")
            .expect("alice is in the directory");
        let relay = app::start(source, config).await;
        (relay.addr, relay.recorder.clone(), Box::new(relay))
    };
    let mut c = Client::connect(addr).await;
    assert!(c.cmd("EHLO app").await.starts_with("250"));
    assert!(auth_plain(&mut c, "alice", TOKEN).await.starts_with("235"));
    let (started, cpu) = (std::time::Instant::now(), cpu_ticks());
    for _ in 0..messages {
        assert!(send(&mut c, "alice@example.test").await.starts_with("250"));
    }
    let wall = messages as f64 / started.elapsed().as_secs_f64();
    let cpu = messages as f64 / ((cpu_ticks() - cpu).max(1) as f64 / 100.0);
    assert_eq!(recorder.sent().len(), messages);
    (wall, cpu)
}

fn main() {
    // `cargo bench` passes `--bench`; the optional numbers are ours.
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let messages = numbers.first().copied().unwrap_or(10_000);
    let rounds = numbers.get(1).copied().unwrap_or(4);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (mut single, mut accounts) = ((0f64, 0f64), (0f64, 0f64));
    runtime.block_on(async {
        for round in 0..rounds {
            // Alternate which goes first: the machine's load drifts. Best of the rounds.
            for account_mode in [round % 2 == 0, round % 2 == 1] {
                let (wall, cpu) = messages_per_second(account_mode, messages).await;
                let best = if account_mode {
                    &mut accounts
                } else {
                    &mut single
                };
                *best = (best.0.max(wall), best.1.max(cpu));
            }
        }
    });
    println!(
        "{{\"messages\":{messages},\"rounds\":{rounds},\"single_msg_per_s_wall\":{:.0},\"single_msg_per_cpu_s\":{:.0},\"accounts_msg_per_s_wall\":{:.0},\"accounts_msg_per_cpu_s\":{:.0},\"cpu_ratio\":{:.3}}}",
        single.0,
        single.1,
        accounts.0,
        accounts.1,
        accounts.1 / single.1
    );
}
