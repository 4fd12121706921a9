//! A hostile upstream that echoes what it got, the login included, in every place a
//! response can carry text: the login's NO/BAD, BYE during login, and after login untagged
//! OK/NO/BAD/BYE, tagged completions, FETCH literals and responses the proxy does not know.
//! Neither the application's bytes nor anything logged may hold the password or one of its
//! encodings (plain, IMAP-quoted, base64 of SASL PLAIN).

mod common;

use std::sync::Arc;

use base64::Engine as _;
use common::scripted::{self, Received, Script};
use common::*;
use mailcred_core::crd::TlsMode;
use mailcred_core::testkit::process_logs;
use mailcred_imap::ImapProxyConfig;

const USER: &str = "victim@example.test";
/// Quote and backslash make the quoted form differ from the plain one.
const PASSWORD: &str = r#"Hunter2-"quoted"\and-long"#;

fn forms() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASSWORD}"));
    let quoted = PASSWORD.replace('\\', "\\\\").replace('"', "\\\"");
    vec![PASSWORD.to_owned(), quoted, b64]
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for form in forms() {
        assert!(
            !text.contains(&form),
            "{what} holds the secret form {form:?}:\n{text}"
        );
    }
}

/// The login command as the proxy sent it, echoed back.
fn echo(r: &Received) -> String {
    String::from_utf8_lossy(&r.raw).replace("\r\n", " ")
}

async fn proxy_for(caps: &str, script: Script) -> RunningProxy {
    process_logs();
    let upstream = scripted::start(caps, script).await;
    let source = SealedSource::new(
        Some(endpoint(
            "localhost",
            upstream.port,
            TlsMode::Implicit,
            Some(upstream.ca_pem.clone()),
        )),
        USER,
        PASSWORD,
        policy(true, &["INBOX"]),
    )
    .await;
    start_proxy(ImapProxyConfig::default(), source).await
}

/// Every way to refuse a login while echoing it: tagged NO and BAD (with and without a
/// response code), and an untagged BYE, for LOGIN (no AUTH=PLAIN) and AUTHENTICATE PLAIN.
#[tokio::test]
async fn login_refusals_that_echo_the_login_reach_neither_app_nor_log() {
    let refusals: [fn(&Received) -> String; 4] = [
        |r| format!("{} NO [ALERT] you sent: {}\r\n", r.tag, echo(r)),
        |r| format!("{} NO you sent: {}\r\n", r.tag, echo(r)),
        |r| format!("{} BAD [CLIENTBUG] cannot parse {}\r\n", r.tag, echo(r)),
        |r| format!("* BYE go away, {}\r\n", echo(r)),
    ];
    for caps in ["IMAP4rev1 LITERAL+", "IMAP4rev1 SASL-IR AUTH=PLAIN"] {
        for refusal in refusals {
            let script: Script = Arc::new(move |r: &Received| match r.name.as_str() {
                "LOGIN" | "AUTHENTICATE" => refusal(r).into_bytes(),
                _ => scripted::ok(r),
            });
            let proxy = proxy_for(caps, script).await;
            let mut c = Client::connect(proxy.addr).await;
            let answer = c.cmd("a1", "LOGIN app x").await;
            let answer = last(&answer);
            assert!(
                answer.starts_with("a1 NO [UNAVAILABLE] Upstream IMAP server unavailable ("),
                "{answer}"
            );
            assert_clean("the application's bytes", &c.transcript);
            proxy.stop().await;
        }
    }
    assert_clean("the log", process_logs().text().as_bytes());
}

/// After a good login, upstream echoes the secret everywhere it can put text.
#[tokio::test]
async fn echoes_after_login_are_scrubbed_everywhere() {
    let script: Script = Arc::new(|r: &Received| {
        let forms = forms();
        let (plain, quoted, b64) = (&forms[0], &forms[1], &forms[2]);
        let tag = &r.tag;
        match r.name.as_str() {
            "LOGIN" | "AUTHENTICATE" => format!("{tag} OK logged in\r\n").into_bytes(),
            "NOOP" => format!(
                "* OK [ALERT] you logged in with {plain}\r\n* NO quoted \"{quoted}\"\r\n* BAD {b64}\r\n* XECHO {plain}\r\n{tag} OK {plain} noop done\r\n"
            )
            .into_bytes(),
            "FETCH" => {
                let body = format!("Subject: hi\r\n\r\nyour password is {plain} and {b64}\r\n");
                format!(
                    "* 1 FETCH (BODY[] {{{}}}\r\n{body})\r\n{tag} OK fetched\r\n",
                    body.len()
                )
                .into_bytes()
            }
            "SELECT" | "EXAMINE" => {
                format!("* 1 EXISTS\r\n{tag} OK [READ-ONLY] {plain}\r\n").into_bytes()
            }
            "LOGOUT" => format!("* BYE {plain}\r\n{tag} OK bye\r\n").into_bytes(),
            _ => scripted::ok(r),
        }
    });
    for caps in ["IMAP4rev1 LITERAL+", "IMAP4rev1 SASL-IR AUTH=PLAIN"] {
        let proxy = proxy_for(caps, script.clone()).await;
        let mut c = Client::connect(proxy.addr).await;
        let r = c.cmd("a1", "LOGIN app x").await;
        assert!(last(&r).starts_with("a1 OK"), "{r:?}");
        let r = c.cmd("a2", "NOOP").await;
        assert_eq!(r.len(), 5, "every response still arrives: {r:?}");
        assert!(last(&r).starts_with("a2 OK "), "{r:?}");
        let r = c.cmd("a3", "SELECT INBOX").await;
        assert!(last(&r).starts_with("a3 OK [READ-ONLY]"), "{r:?}");
        c.send(b"a4 FETCH 1 BODY[]\r\n").await;
        let line = c.line().await.unwrap();
        let n = literal_len(&line).expect("the literal keeps its length");
        let body = c.literal(n).await;
        assert!(String::from_utf8_lossy(&body).starts_with("Subject: hi"));
        let r = c.until_tagged("a4").await;
        assert_eq!(last(&r), "a4 OK fetched");
        let r = c.cmd("a5", "LOGOUT").await;
        assert!(last(&r).starts_with("a5 OK"), "{r:?}");
        assert_clean("the application's bytes", &c.transcript);
        proxy.stop().await;
    }
    assert_clean("the log", process_logs().text().as_bytes());
}
