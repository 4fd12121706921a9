//! A scripted upstream IMAP server speaking implicit TLS with a certificate from a CA made in
//! the test: for what no real server does on purpose (echoing the login, hostile text).
//! The script sees each whole command (literals inlined) and returns the bytes to answer.

use std::sync::Arc;

use mailcred_core::testkit::ScriptedServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// One command as the scripted server received it.
pub struct Received {
    pub tag: String,
    /// Upper-cased command name (`UID` sub-commands not split).
    pub name: String,
    /// The whole command, literal bytes inline.
    pub raw: Vec<u8>,
}

pub type Script = Arc<dyn Fn(&Received) -> Vec<u8> + Send + Sync>;

pub struct ScriptedUpstream {
    pub port: u16,
    /// The test CA, to put into the endpoint's caPem.
    pub ca_pem: String,
}

/// Starts the server: it greets, answers CAPABILITY with `capabilities` itself, and hands
/// every other command to `script`. Serves any number of connections.
pub async fn start(capabilities: &str, script: Script) -> ScriptedUpstream {
    let caps = capabilities.to_owned();
    let server = ScriptedServer::implicit_tls(move |tls| {
        let (caps, script) = (caps.clone(), script.clone());
        async move {
            let _ = serve(tls, &caps, script).await;
        }
    })
    .await;
    ScriptedUpstream {
        port: server.port,
        ca_pem: server.ca_pem,
    }
}

async fn serve<S>(stream: S, caps: &str, script: Script) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    w.write_all(b"* OK scripted upstream ready\r\n").await?;
    w.flush().await?;
    loop {
        let mut raw = Vec::new();
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            raw.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let Some(n) = super::literal_len(text.trim_end()) else {
                break;
            };
            if !text.trim_end().ends_with("+}") {
                w.write_all(b"+ go on\r\n").await?;
                w.flush().await?;
            }
            let mut literal = vec![0u8; n];
            r.read_exact(&mut literal).await?;
            raw.extend_from_slice(&literal);
        }
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut words = text.split_whitespace();
        let tag = words.next().unwrap_or_default().to_owned();
        let name = words.next().unwrap_or_default().to_ascii_uppercase();
        if name == "DONE" {
            continue;
        }
        let answer = if name == "CAPABILITY" {
            format!("* CAPABILITY {caps}\r\n{tag} OK done\r\n").into_bytes()
        } else {
            script(&Received { tag, name, raw })
        };
        w.write_all(&answer).await?;
        w.flush().await?;
    }
}

/// `tag OK done`, the answer to anything a script does not care about.
pub fn ok(received: &Received) -> Vec<u8> {
    format!("{} OK {} done\r\n", received.tag, received.name).into_bytes()
}
