//! The IMAP front-end: the command reader (tags, literals, the lexer, mailbox names) in
//! memory, and the upstream response filter (LIST/LSUB/STATUS filtering, CAPABILITY
//! rewriting, literal streaming, tagged responses) through the real proxy on loopback with a
//! scripted upstream.
//!
//! Every `imap_response` call builds its own runtime, upstream listener and proxy, so calls
//! share nothing: parallel tests cannot pair one call's application with another's script,
//! and no lock orders them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mailcred_core::crd::{ImapPolicy, Policy, TlsMode, UpstreamEndpoint};
use mailcred_core::credential::{CredentialSource, UsableCredential};
use mailcred_core::{MailPassword, UpstreamAuth};
use mailcred_imap::mailbox::MailboxPatterns;
use mailcred_imap::outcome::Reason;
use mailcred_imap::wire::command::{Limits, Read, Refusal, read_command};
use mailcred_imap::wire::conn::Conn;
use mailcred_imap::wire::lexer::{Item, is_valid_tag};
use mailcred_imap::wire::mutf7::{decode_mutf7, encode_mutf7};
use mailcred_imap::{ImapMetrics, ImapProxy, ImapProxyConfig, Side};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::mem::{MemStream, chunked, runtime};

const LIMITS: Limits = Limits {
    max_line: 512,
    max_inline_literal: 1024,
    max_command: 4096,
    max_append: 8192,
    io_timeout: Duration::from_secs(5),
};

fn check_names(items: &[Item], patterns: &MailboxPatterns) {
    for item in items {
        match item {
            Item::List(inner) => check_names(inner, patterns),
            other => {
                let Some(wire) = other.astring() else {
                    continue;
                };
                let _ = patterns.check_wire(wire);
                let _ = patterns.allows_wire_lenient(wire);
                if let Some(name) = decode_mutf7(wire) {
                    let again = encode_mutf7(&name);
                    assert_eq!(
                        decode_mutf7(again.as_bytes()).as_deref(),
                        Some(name.as_str()),
                        "modified UTF-7 does not round-trip"
                    );
                }
            }
        }
    }
}

/// Any bytes as application input to the command reader (first byte: read size).
pub fn imap_command(data: &[u8]) {
    let (chunk, input) = chunked(data);
    let patterns = MailboxPatterns::new(&["INBOX", "Shared/*", "Arch&AOQ-ve"]);
    runtime().block_on(async {
        let mut conn = Conn::new(
            MemStream::new(input, chunk),
            Side::App,
            64,
            LIMITS.max_line + 2,
            4096,
            LIMITS.io_timeout,
        );
        // Bounded: each pass consumes input or ends.
        for _ in 0..256 {
            let Ok(first) = conn
                .read_line(LIMITS.max_line, LIMITS.io_timeout, "fuzz")
                .await
            else {
                break;
            };
            let read = read_command(&mut conn, first, &LIMITS, |name, uid| {
                let refused = matches!(name, b"STORE" | b"EXPUNGE" | b"DELETE")
                    || matches!(uid, Some(b"STORE" | b"EXPUNGE"));
                refused.then(|| Refusal {
                    status: "NO",
                    text: "read-only".into(),
                    reason: Reason::ReadOnly,
                })
            })
            .await;
            match read {
                Ok(Read::Command(cmd)) => {
                    assert!(is_valid_tag(&cmd.tag), "invalid tag accepted");
                    assert!(!matches!(
                        cmd.name.as_slice(),
                        b"STORE" | b"EXPUNGE" | b"DELETE"
                    ));
                    let held: usize = cmd
                        .segments
                        .iter()
                        .map(|s| s.text.len() + s.literal.as_ref().map_or(0, Vec::len))
                        .sum();
                    assert!(held <= LIMITS.max_command, "command of {held} bytes held");
                    check_names(&cmd.items, &patterns);
                }
                Ok(Read::AppendMessage(cmd, marker)) => {
                    assert_eq!(cmd.name, b"APPEND");
                    assert!(marker.len <= LIMITS.max_append);
                    check_names(&cmd.items, &patterns);
                    if conn
                        .discard(marker.len, LIMITS.io_timeout, "fuzz")
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(Read::Rejected(_)) => {}
                Ok(Read::Close(_)) | Err(_) => break,
            }
            if conn.flush().await.is_err() {
                break;
            }
        }
    });
}

struct Source(Arc<UsableCredential>);

#[async_trait]
impl CredentialSource for Source {
    async fn credential(&self) -> Result<Arc<UsableCredential>, mailcred_core::Error> {
        Ok(self.0.clone())
    }
}

struct Fixture {
    proxy: SocketAddr,
    upstream: TcpListener,
}

/// The upstream password; the application must never see it, whatever upstream sends.
pub const PASSWORD: &str = "fuzz-imap-password";
const USERNAME: &str = "reader@example.test";

const UPSTREAM_CAPS: &str = "* CAPABILITY IMAP4rev1 LITERAL+ IDLE ENABLE UIDPLUS\r\n";
const LOGIN_OK: &str =
    "m3 OK [CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE AUTH=PLAIN LITERAL+] Logged in\r\n";

/// A scripted upstream listener and a proxy in front of it, on the caller's runtime.
async fn fixture() -> std::io::Result<Fixture> {
    let upstream = TcpListener::bind("127.0.0.1:0").await?;
    let port = upstream.local_addr()?.port();
    let password = match MailPassword::new(PASSWORD.into()) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let credential = Arc::new(UsableCredential {
        namespace: "ns".into(),
        name: "mail".into(),
        username: USERNAME.into(),
        smtp: None,
        imap: Some(UpstreamEndpoint {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            ca_pem: None,
            insecure: true,
            insecure_reason: Some("fuzzing on loopback".into()),
        }),
        policy: Policy {
            imap: ImapPolicy {
                enabled: true,
                read_only: true,
                allowed_mailboxes: vec!["INBOX".into(), "Shared/*".into()],
                ..Default::default()
            },
            ..Default::default()
        },
        oauth: None,
        sealed_fingerprint: "sha256:fuzz".into(),
        auth: UpstreamAuth::Password(password),
    });
    let config = ImapProxyConfig {
        login_timeout: Duration::from_secs(2),
        upstream_timeout: Duration::from_secs(2),
        app_io_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(5),
        max_line_bytes: 1024,
        max_inline_literal_bytes: 2048,
        max_command_bytes: 8192,
        shutdown_grace: Duration::from_secs(1),
        ..Default::default()
    };
    let proxy = ImapProxy::new(
        config,
        Arc::new(Source(credential)),
        ImapMetrics::unregistered(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Ends with the runtime of its call.
    tokio::spawn(async move {
        let _ = proxy
            .serve(listener, mailcred_imap::CancellationToken::new())
            .await;
    });
    Ok(Fixture {
        proxy: addr,
        upstream,
    })
}

/// The scripted upstream: greeting, capabilities, LOGIN (LITERAL+), then, once the
/// application's first command arrived, the fuzzed responses, then EOF.
async fn upstream(stream: TcpStream, responses: &[u8]) -> std::io::Result<()> {
    // Small writes in a row: without NODELAY, Nagle and delayed ACKs add 40 ms stalls.
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    w.write_all(b"* OK fuzz upstream ready\r\n").await?;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if line.starts_with(b"m2 CAPABILITY") {
            w.write_all(UPSTREAM_CAPS.as_bytes()).await?;
            w.write_all(b"m2 OK done\r\n").await?;
        } else if line.starts_with(b"m3 LOGIN") {
            // User and password follow as LITERAL+ literals, each ending its line.
            for _ in 0..2 {
                line.clear();
                r.read_until(b'\n', &mut line).await?;
            }
            w.write_all(LOGIN_OK.as_bytes()).await?;
            break;
        }
    }
    let first_command = tokio::time::timeout(Duration::from_secs(2), async {
        line.clear();
        r.read_until(b'\n', &mut line).await
    })
    .await;
    if !matches!(first_command, Ok(Ok(n)) if n > 0) {
        return Ok(());
    }
    w.write_all(responses).await?;
    w.shutdown().await?;
    let mut sink = [0u8; 4096];
    while r.read(&mut sink).await? > 0 {}
    Ok(())
}

/// Any bytes as upstream responses, optionally preceded by application commands and the
/// separator `=====\n`. Checks that the session ends (no hang) and that no upstream AUTH or
/// COMPRESS capability reaches the application in a CAPABILITY it did not stream verbatim.
pub fn imap_response(data: &[u8]) {
    let got = imap_response_session(data);
    // The login reply is the proxy's own: upstream's AUTH= and COMPRESS never reach the app.
    let text = String::from_utf8_lossy(&got);
    // Upstream may echo anything, the login included: the secret never reaches the app.
    assert!(
        !text.contains(PASSWORD),
        "the password reached the application"
    );
    if let Some(login) = text.lines().find(|l| l.starts_with("a0 ")) {
        assert!(
            !login.contains("AUTH=") && !login.contains("COMPRESS"),
            "{login}"
        );
    }
}

/// Runs one session of [`imap_response`] and returns what the application received.
pub fn imap_response_session(data: &[u8]) -> Vec<u8> {
    let (app_part, responses) = match data.windows(6).position(|w| w == b"=====\n") {
        Some(at) => (&data[..at], &data[at + 6..]),
        None => (&b""[..], data),
    };
    // Its own runtime: tasks of another call (its proxy, its upstream) never run here.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build a tokio runtime: {e}"),
    };
    let run = async {
        let fixture = fixture().await?;
        let app = async {
            let s = TcpStream::connect(fixture.proxy).await?;
            s.set_nodelay(true)?;
            let (mut r, mut w) = s.into_split();
            let mut out = Vec::new();
            out.extend_from_slice(b"a0 LOGIN app x\r\na1 NOOP\r\n");
            out.extend_from_slice(app_part);
            // A last line without its CRLF would make every such input wait out the
            // application timeout (the write side stays open); partial lines are the
            // imap_command target's job. This one is about what upstream sends.
            if !out.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
            let writer = async move {
                let _ = w.write_all(&out).await;
                // Keep the write side open: the session must end because upstream did.
                w
            };
            let reader = async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let n = r.read(&mut buf).await?;
                    if n == 0 || got.len() > 16 << 20 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                Ok::<_, std::io::Error>(got)
            };
            let (_w, got) = tokio::join!(writer, reader);
            got
        };
        let up = async {
            let (stream, _) = fixture.upstream.accept().await?;
            upstream(stream, responses).await
        };
        let (got, _) = tokio::join!(app, up);
        got
    };
    match runtime.block_on(async { tokio::time::timeout(Duration::from_secs(60), run).await }) {
        Ok(got) => got.unwrap_or_default(),
        Err(_) => panic!("the IMAP session did not end after upstream closed"),
    }
}
