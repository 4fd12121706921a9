//! Bad input from the application before login: the proxy answers BAD/NO (or BYE where the
//! protocol leaves no other safe choice), never panics, never buffers without bound, and
//! the connection stays usable where it can.

mod common;

use common::*;
use mailcred_core::crd::TlsMode;
use mailcred_imap::ImapProxyConfig;

async fn proxy_without_upstream(config: ImapProxyConfig) -> RunningProxy {
    // Port 1 on loopback: nothing listens; these tests never log in.
    let source = SealedSource::new(
        Some(endpoint("127.0.0.1", 1, TlsMode::Implicit, None)),
        "app@example.test",
        "not-used-here",
        policy(true, &["INBOX"]),
    )
    .await;
    start_proxy(config, source).await
}

#[tokio::test]
async fn line_over_64_kib_gets_bad_and_the_session_goes_on() {
    let proxy = proxy_without_upstream(ImapProxyConfig::default()).await;
    let mut c = Client::connect(proxy.addr).await;
    // 1 MiB without a line end, sent while the proxy reads: it must drain, not store.
    let mut long = b"a1 NOOP ".to_vec();
    long.resize(1024 * 1024, b'x');
    long.extend_from_slice(b"\r\n");
    c.send(&long).await;
    let bad = c.line().await.unwrap();
    assert!(bad.starts_with("* BAD [TOOBIG]"), "{bad}");
    let ok = c.cmd("a2", "NOOP").await;
    assert_eq!(last(&ok), "a2 OK NOOP completed");
    // Exactly at the bound is still a line.
    let mut edge = b"a3 NOOP ".to_vec();
    edge.resize(64 * 1024, b'y');
    edge.extend_from_slice(b"\r\n");
    c.send(&edge).await;
    let r = c.until_tagged("a3").await;
    assert_eq!(
        last(&r),
        "a3 OK NOOP completed",
        "a line of exactly 64 KiB is accepted"
    );
    let text = proxy.metrics_text();
    assert!(
        text.contains("mailcred_imap_denials_total{reason=\"line_too_long\"} 1"),
        "{text}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn literal_of_4_gib_is_refused_before_reading() {
    let proxy = proxy_without_upstream(ImapProxyConfig::default()).await;
    let mut c = Client::connect(proxy.addr).await;
    // Synchronizing: no continuation request, a tagged NO, and the connection stays in sync.
    c.send(b"a1 LOGIN {4294967296}\r\n").await;
    let r = c.line().await.unwrap();
    assert_eq!(r, "a1 NO [TOOBIG] Literal too large");
    let ok = c.cmd("a2", "NOOP").await;
    assert_eq!(last(&ok), "a2 OK NOOP completed");
    // Non-synchronizing: the client is already sending 4 GiB; the proxy says BYE and closes
    // instead of reading it.
    c.send(b"a3 LOGIN {4294967296+}\r\nuser").await;
    let bye = c.line().await.unwrap();
    assert!(bye.starts_with("* BYE [TOOBIG]"), "{bye}");
    assert!(c.closed().await);
    proxy.stop().await;
}

#[tokio::test]
async fn literal_over_the_configured_maximum_is_refused() {
    let config = ImapProxyConfig {
        max_inline_literal_bytes: 1024,
        max_append_bytes: 4096,
        ..Default::default()
    };
    let proxy = proxy_without_upstream(config).await;
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"a1 LOGIN {1025}\r\n").await;
    assert_eq!(c.line().await.unwrap(), "a1 NO [TOOBIG] Literal too large");
    // A non-synchronizing one small enough to skip is read and dropped: still in sync.
    let mut cmd = b"a2 LOGIN {2000+}\r\n".to_vec();
    cmd.extend(std::iter::repeat_n(b'z', 2000));
    cmd.extend_from_slice(b" pass\r\na3 NOOP\r\n");
    c.send(&cmd).await;
    assert_eq!(c.line().await.unwrap(), "a2 NO [TOOBIG] Literal too large");
    assert_eq!(c.line().await.unwrap(), "a3 OK NOOP completed");
    // Within the limit, a literal works.
    c.send(b"a4 CAPABILITY {3}\r\n").await;
    assert_eq!(c.line().await.unwrap(), "+ Ready for literal data");
    c.send(b"abc\r\n").await;
    let r = c.until_tagged("a4").await;
    assert_eq!(last(&r), "a4 OK CAPABILITY completed", "{r:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn unbalanced_quotes_and_parentheses_get_bad() {
    let proxy = proxy_without_upstream(ImapProxyConfig::default()).await;
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a1", "LOGIN \"user pass").await;
    assert_eq!(last(&r), "a1 BAD unterminated quoted string");
    let r = c.cmd("a2", "LOGIN (user pass").await;
    assert_eq!(last(&r), "a2 BAD unbalanced parentheses");
    let r = c.cmd("a3", "LOGIN user) pass").await;
    assert_eq!(last(&r), "a3 BAD unbalanced parentheses");
    let r = c.cmd("a4", "LOGIN \"a\\x\" pass").await;
    assert_eq!(last(&r), "a4 BAD invalid escape in quoted string");
    let r = c.cmd("a5", "NOOP").await;
    assert_eq!(last(&r), "a5 OK NOOP completed");
    proxy.stop().await;
}

#[tokio::test]
async fn tags_with_illegal_characters_get_untagged_bad() {
    let proxy = proxy_without_upstream(ImapProxyConfig::default()).await;
    let mut c = Client::connect(proxy.addr).await;
    for bad in [
        "a+1 NOOP",
        "a*1 NOOP",
        "(x NOOP",
        "\"q\" NOOP",
        "a\\b NOOP",
        "t\u{e9} NOOP",
    ] {
        c.send(format!("{bad}\r\n").as_bytes()).await;
        assert_eq!(c.line().await.unwrap(), "* BAD Invalid tag", "{bad}");
    }
    c.send(b"\r\n").await;
    assert_eq!(c.line().await.unwrap(), "* BAD Empty command line");
    let r = c.cmd("ok1", "NOOP").await;
    assert_eq!(last(&r), "ok1 OK NOOP completed");
    proxy.stop().await;
}

#[tokio::test]
async fn ten_thousand_pipelined_commands_are_all_answered_in_order() {
    let proxy = proxy_without_upstream(ImapProxyConfig::default()).await;
    let c = Client::connect(proxy.addr).await;
    let mut batch = Vec::new();
    for i in 0..10_000 {
        batch.extend_from_slice(format!("p{i} NOOP\r\n").as_bytes());
    }
    let (mut reader, mut writer) = c.stream.into_split();
    let send = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        writer.write_all(&batch).await.unwrap();
        writer
    });
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(&mut reader).lines();
    for i in 0..10_000 {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(line, format!("p{i} OK NOOP completed"));
    }
    drop(send.await.unwrap());
    proxy.stop().await;
}

#[tokio::test]
async fn client_vanishing_mid_literal_ends_only_its_session() {
    let proxy = proxy_without_upstream(ImapProxyConfig::default()).await;
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"a1 LOGIN {20}\r\n").await;
    assert_eq!(c.line().await.unwrap(), "+ Ready for literal data");
    c.send(b"only-half").await;
    drop(c);
    // The proxy is still serving.
    let mut d = Client::connect(proxy.addr).await;
    let r = d.cmd("b1", "NOOP").await;
    assert_eq!(last(&r), "b1 OK NOOP completed");
    drop(d);
    // The vanished session was closed and counted (not left waiting on the literal).
    let mut ended = false;
    for _ in 0..100 {
        let text = proxy.metrics_text();
        if text.contains("mailcred_imap_sessions_total{outcome=\"app_closed\"} 1") {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ended, "{}", proxy.metrics_text());
    proxy.stop().await;
}

#[tokio::test]
async fn commands_before_login_are_refused_and_capability_is_local() {
    let proxy = proxy_without_upstream(ImapProxyConfig::default()).await;
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a1", "CAPABILITY").await;
    assert_eq!(
        r[0],
        "* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID AUTH=PLAIN"
    );
    for cmd in [
        "SELECT INBOX",
        "FETCH 1 BODY[]",
        "XYZZY",
        "UID STORE 1 +FLAGS (\\Seen)",
    ] {
        let r = c.cmd("a2", cmd).await;
        assert_eq!(last(&r), "a2 BAD Log in first", "{cmd}");
    }
    let r = c.cmd("a3", "STARTTLS").await;
    assert!(last(&r).starts_with("a3 BAD STARTTLS is not offered"));
    let r = c.cmd("a4", "ID NIL").await;
    assert_eq!(
        r,
        vec!["* ID (\"name\" \"mailcred\")", "a4 OK ID completed"]
    );
    let r = c.cmd("a5", "AUTHENTICATE CRAM-MD5").await;
    assert!(last(&r).starts_with("a5 NO [CANNOT]"));
    let r = c.cmd("a6", "LOGOUT").await;
    assert_eq!(r, vec!["* BYE Logging out", "a6 OK LOGOUT completed"]);
    assert!(c.closed().await);
    proxy.stop().await;
}
