//! Resource bounds a misbehaving application cannot get past (issue #10 items 8 and 9): a
//! client that never reads its replies, and message memory shared by all sessions.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mailcred_core::Error;
use mailcred_core::crd::SmtpPolicy;
use mailcred_core::credential::{CredentialSource, UsableCredential};
use mailcred_smtp::RelayConfig;
use support::app::{Client, Relay, credential, start};
use tokio::io::AsyncWriteExt;

struct Source(Arc<UsableCredential>);

#[async_trait]
impl CredentialSource for Source {
    async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
        Ok(self.0.clone())
    }
}

async fn relay(config: RelayConfig) -> Relay {
    start(Arc::new(Source(credential(SmtpPolicy::default()))), config).await
}

/// Waits (bounded, as a hang guard only) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("never happened: {what}"));
}

/// Item 8: pipelining without ever reading replies. The relay's writes block, hit the write
/// timeout and the connection is closed: the client's writes then fail, and the slot is free.
#[tokio::test]
async fn client_that_never_reads_loses_its_connection() {
    let relay = relay(RelayConfig {
        write_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    for command in [&b"NOOP\r\n"[..], b"HELP\r\n", b"RSET\r\n"] {
        let mut c = Client::connect(relay.addr).await;
        let burst = command.repeat(64 * 1024 / command.len());
        let mut written = 0usize;
        let result = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                if c.w.write_all(&burst).await.is_err() {
                    return;
                }
                written += burst.len();
                assert!(written < 4 << 30, "the relay kept accepting input");
            }
        })
        .await;
        assert!(result.is_ok(), "the relay never closed the connection");
        until("the session ended", || {
            relay.metrics.open_connections.get() == 0
        })
        .await;
    }
}

/// Item 9: message content is bounded across sessions. One session holding most of the
/// budget makes another's message a 452 4.3.1; the budget comes back when messages end.
#[tokio::test]
async fn message_memory_is_bounded_across_sessions() {
    const BUDGET: usize = 2 << 20;
    let relay = relay(RelayConfig {
        message_memory: BUDGET,
        ..Default::default()
    })
    .await;
    assert_eq!((relay.memory_free)(), BUDGET);
    let chunk = format!("{}\r\n", "x".repeat(998));
    let body = |kib: usize| chunk.repeat(kib * 1024 / chunk.len());

    let mut holder = Client::connect(relay.addr).await;
    holder
        .envelope("app@example.test", &["a@example.test"])
        .await;
    assert!(holder.cmd("DATA").await.starts_with("354"));
    holder.send(b"From: app@example.test\r\n\r\n").await;
    holder.send(body(1500).as_bytes()).await;
    until("the first message holds 1500 KiB", || {
        (relay.memory_free)() < BUDGET - 1450 * 1024
    })
    .await;

    let mut other = Client::connect(relay.addr).await;
    other
        .envelope("app@example.test", &["a@example.test"])
        .await;
    assert!(other.cmd("DATA").await.starts_with("354"));
    other.send(b"From: app@example.test\r\n\r\n").await;
    other.send(body(700).as_bytes()).await;
    other.send(b".\r\n").await;
    let r = other.reply().await;
    assert!(r.starts_with("452 4.3.1"), "{r}");
    assert!(
        other.cmd("NOOP").await.starts_with("250"),
        "in sync after the refusal"
    );

    holder.send(b".\r\n").await;
    assert!(holder.reply().await.starts_with("250 2.0.0"));
    until("the budget is whole again", || {
        (relay.memory_free)() == BUDGET
    })
    .await;
    assert_eq!(relay.recorder.sent().len(), 1);

    // N at once: two sessions hold 700 KiB each at the same time; a third message does
    // not fit beside them; both held messages then go through.
    let mut held = Vec::new();
    for n in 1..=2 {
        let mut c = Client::connect(relay.addr).await;
        c.envelope("app@example.test", &["a@example.test"]).await;
        assert!(c.cmd("DATA").await.starts_with("354"));
        c.send(b"From: app@example.test\r\n\r\n").await;
        c.send(body(700).as_bytes()).await;
        until("the held messages are stored", || {
            (relay.memory_free)() <= BUDGET - n * 690 * 1024
        })
        .await;
        held.push(c);
    }
    let mut third = Client::connect(relay.addr).await;
    third
        .envelope("app@example.test", &["a@example.test"])
        .await;
    assert!(third.cmd("DATA").await.starts_with("354"));
    third
        .send(format!("From: app@example.test\r\n\r\n{}.\r\n", body(700)).as_bytes())
        .await;
    let r = third.reply().await;
    assert!(r.starts_with("452 4.3.1"), "{r}");
    for mut c in held {
        c.send(b".\r\n").await;
        let r = c.reply().await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
    }
    until("the budget is whole again", || {
        (relay.memory_free)() == BUDGET
    })
    .await;
    assert_eq!(relay.recorder.sent().len(), 3);
}
