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
