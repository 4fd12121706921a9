use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn rules(max_connections: usize, grace: Duration) -> AcceptRules {
    AcceptRules {
        name: "test front-end",
        max_connections,
        refusal: b"busy\r\n",
        shutdown_grace: grace,
        allow_non_loopback: false,
    }
}

/// A session that answers "hi", then waits for the shutdown (or forever when `stubborn`).
async fn session(
    mut stream: TcpStream,
    shutdown: CancellationToken,
    stubborn: bool,
    ended: Arc<AtomicUsize>,
) {
    let _ = stream.write_all(b"hi\r\n").await;
    if stubborn {
        std::future::pending::<()>().await;
    }
    shutdown.cancelled().await;
    ended.fetch_add(1, Ordering::SeqCst);
}

async fn read_some(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("a reply in time")
        .expect("read");
    buf.truncate(n);
    buf
}

#[tokio::test]
async fn refuses_over_the_limit_and_drains_on_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let (ended, refusals) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let server = {
        let (shutdown, ended, refusals) = (shutdown.clone(), ended.clone(), refusals.clone());
        tokio::spawn(async move {
            let rules = rules(2, Duration::from_secs(10));
            serve_connections(
                listener,
                &rules,
                shutdown,
                |_| {
                    refusals.fetch_add(1, Ordering::SeqCst);
                },
                |stream, _, token| session(stream, token, false, ended.clone()),
            )
            .await
        })
    };
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_some(&mut first).await, b"hi\r\n");
    assert_eq!(read_some(&mut second).await, b"hi\r\n");
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_some(&mut third).await, b"busy\r\n");
    assert_eq!(read_some(&mut third).await, b"", "closed after the refusal");
    assert_eq!(refusals.load(Ordering::SeqCst), 1);
    // A freed slot is served again.
    drop(first);
    shutdown.cancel();
    server.await.unwrap().expect("serves");
    assert_eq!(
        ended.load(Ordering::SeqCst),
        2,
        "both sessions saw the shutdown and ended"
    );
    drop(second);
}

#[tokio::test]
async fn a_freed_slot_is_served_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let rules = rules(1, Duration::from_secs(10));
            serve_connections(
                listener,
                &rules,
                shutdown,
                |_| {},
                |mut stream: TcpStream, _, _| async move {
                    let _ = stream.write_all(b"hi\r\n").await;
                },
            )
            .await
        })
    };
    for _ in 0..3 {
        let mut client = TcpStream::connect(addr).await.unwrap();
        assert_eq!(read_some(&mut client).await, b"hi\r\n");
        assert_eq!(read_some(&mut client).await, b"", "the session ended");
        // The permit is released when the session's task ends, just after the close.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    server.await.unwrap().expect("serves");
}

#[tokio::test]
async fn sessions_past_the_grace_period_are_ended() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let ended = Arc::new(AtomicUsize::new(0));
    let server = {
        let (shutdown, ended) = (shutdown.clone(), ended.clone());
        tokio::spawn(async move {
            let rules = rules(4, Duration::from_millis(200));
            serve_connections(
                listener,
                &rules,
                shutdown,
                |_| {},
                |stream, _, token| session(stream, token, true, ended.clone()),
            )
            .await
        })
    };
    let mut client = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_some(&mut client).await, b"hi\r\n");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the loop returns after the grace period")
        .unwrap()
        .expect("serves");
    assert_eq!(
        read_some(&mut client).await,
        b"",
        "the stubborn session was closed"
    );
    assert_eq!(ended.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn refuses_a_non_loopback_listener() {
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = serve_connections(
        listener,
        &rules(1, Duration::ZERO),
        CancellationToken::new(),
        |_| {},
        |_, _, _| async {},
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, AcceptError::NotLoopback { .. }), "{err}");
    assert!(err.to_string().contains("non-loopback"), "{err}");
}

/// A listener whose first `failures` accepts fail as accept(2) does when the process is out of
/// descriptors; it counts every accept the loop starts.
struct FailingAccepts {
    listener: TcpListener,
    failures: AtomicUsize,
    attempts: Arc<AtomicUsize>,
}

/// accept(2)'s "too many open files" (24 on Linux, macOS and the BSDs).
const EMFILE: i32 = 24;

impl FailingAccepts {
    async fn bind(failures: usize) -> Self {
        FailingAccepts {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            failures: AtomicUsize::new(failures),
            attempts: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl ConnectionSource for FailingAccepts {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(io::Error::from_raw_os_error(EMFILE));
        }
        self.listener.accept().await
    }
}

/// Lets the spawned loop run up to its next await without moving the paused clock.
async fn let_the_loop_run() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_accept_waits_out_the_back_off_then_serves_again() {
    let source = FailingAccepts::bind(2).await;
    let (addr, attempts) = (source.local_addr().unwrap(), source.attempts.clone());
    let shutdown = CancellationToken::new();
    let server = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let rules = rules(4, Duration::from_secs(10));
            serve_from(
                source,
                &rules,
                shutdown,
                |_| {},
                |mut stream: TcpStream, _, _| async move {
                    let _ = stream.write_all(b"hi\r\n").await;
                },
            )
            .await
        })
    };
    let_the_loop_run().await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "the first accept failed"
    );
    tokio::time::advance(ACCEPT_BACKOFF - Duration::from_millis(1)).await;
    let_the_loop_run().await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "no second accept before the back-off is over"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    let_the_loop_run().await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "one more accept (failing again) once the back-off is over"
    );
    tokio::time::advance(ACCEPT_BACKOFF).await;
    let_the_loop_run().await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "the errors cleared: an accept is waiting for a connection"
    );
    // Real sockets from here on: a paused clock would jump to read_some's timeout whenever
    // the runtime waits for the kernel.
    tokio::time::resume();
    for _ in 0..2 {
        let mut client = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            read_some(&mut client).await,
            b"hi\r\n",
            "served after the errors"
        );
    }
    shutdown.cancel();
    server.await.unwrap().expect("serves");
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_the_back_off_ends_the_loop_at_once() {
    let source = FailingAccepts::bind(usize::MAX).await;
    let attempts = source.attempts.clone();
    let shutdown = CancellationToken::new();
    let server = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let rules = rules(4, Duration::from_secs(10));
            serve_from(source, &rules, shutdown, |_| {}, |_, _, _| async {}).await
        })
    };
    let_the_loop_run().await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "the first accept failed"
    );
    tokio::time::advance(ACCEPT_BACKOFF / 2).await;
    let cancelled_at = tokio::time::Instant::now();
    shutdown.cancel();
    // With the clock paused, a loop still asleep would move it to the back-off's end.
    server.await.unwrap().expect("serves");
    assert_eq!(
        cancelled_at.elapsed(),
        Duration::ZERO,
        "the loop did not wait out the back-off"
    );
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "no accept after the shutdown"
    );
}
