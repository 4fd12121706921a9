//! A scripted upstream submission server for hostile-upstream tests: real TCP, real TLS (a
//! test CA and the loopback listener from core's testkit), STARTTLS or implicit TLS, and
//! knobs for each misbehaviour.

use std::sync::{Arc, Mutex};

use mailcred_core::testkit::ScriptedServer;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// How the scripted server behaves.
#[derive(Clone)]
pub struct Script {
    pub implicit_tls: bool,
    /// Written right after `220` to STARTTLS, in the same write.
    pub starttls_injection: Vec<u8>,
    /// Mechanisms offered after TLS.
    pub auth_mechanisms: &'static str,
    /// Answer AUTH (the last line of it) with 535 echoing what the client sent.
    pub echo_auth: bool,
    /// Recipients that get 250; any other gets `550 5.1.1`. Empty: all accepted.
    pub known_recipients: Vec<String>,
    /// RCPT replies echo the AUTH line the client sent earlier on this connection.
    pub echo_auth_in_rcpt: bool,
    /// Reply to the end of DATA.
    pub final_reply: &'static str,
    /// Access tokens refused at AUTH XOAUTH2 / OAUTHBEARER (334 error challenge, then 535).
    pub refused_tokens: Vec<String>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            implicit_tls: false,
            starttls_injection: Vec::new(),
            auth_mechanisms: "PLAIN LOGIN",
            echo_auth: false,
            known_recipients: Vec::new(),
            echo_auth_in_rcpt: false,
            final_reply: "250 2.0.0 queued",
            refused_tokens: Vec::new(),
        }
    }
}

/// What the server saw.
#[derive(Default, Debug)]
pub struct Seen {
    /// Command lines, per connection, in order (after TLS only once TLS is up).
    pub connections: Vec<Vec<String>>,
    pub messages: Vec<Vec<u8>>,
}

pub struct Scripted {
    pub port: u16,
    pub ca_pem: String,
    pub seen: Arc<Mutex<Seen>>,
}

impl Scripted {
    pub async fn start(script: Script) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let log = seen.clone();
        let server = ScriptedServer::plaintext_first(move |tcp, tls| {
            let (script, log) = (script.clone(), log.clone());
            async move {
                let index = {
                    let mut s = log.lock().unwrap();
                    s.connections.push(Vec::new());
                    s.connections.len() - 1
                };
                let mut conn = Conn {
                    script,
                    log,
                    index,
                    auth_line: String::new(),
                };
                if conn.script.implicit_tls {
                    let Ok(stream) = tls.accept(tcp).await else {
                        return;
                    };
                    let _ = conn.serve(&mut BufReader::new(stream), true).await;
                } else {
                    let mut reader = BufReader::new(tcp);
                    if conn.serve(&mut reader, false).await == Some(Upgrade) {
                        let Ok(stream) = tls.accept(reader.into_inner()).await else {
                            return;
                        };
                        let _ = conn.serve(&mut BufReader::new(stream), true).await;
                    }
                }
            }
        })
        .await;
        Self {
            port: server.port,
            ca_pem: server.ca_pem,
            seen,
        }
    }
}

#[derive(PartialEq, Eq)]
struct Upgrade;

struct Conn {
    script: Script,
    log: Arc<Mutex<Seen>>,
    index: usize,
    auth_line: String,
}

impl Conn {
    fn record(&self, line: &str) {
        self.log.lock().unwrap().connections[self.index].push(line.to_string());
    }

    /// Serves commands; returns `Some(Upgrade)` after answering STARTTLS.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut BufReader<S>,
        secure: bool,
    ) -> Option<Upgrade> {
        if !secure || self.script.implicit_tls {
            io.get_mut()
                .write_all(b"220 scripted ESMTP\r\n")
                .await
                .ok()?;
        }
        let mut login_steps = 0;
        loop {
            let mut line = String::new();
            if io.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            let line = line.trim_end().to_string();
            self.record(&line);
            let upper = line.to_ascii_uppercase();
            let reply: Vec<u8> = if login_steps > 0 {
                login_steps -= 1;
                self.auth_line = line.clone();
                if login_steps > 0 {
                    b"334 UGFzc3dvcmQ6\r\n".to_vec()
                } else {
                    self.auth_reply(&line)
                }
            } else if upper.starts_with("EHLO") {
                let auth = if secure {
                    format!("250-AUTH {}\r\n", self.script.auth_mechanisms)
                } else {
                    String::new()
                };
                let tls = if secure { "" } else { "250-STARTTLS\r\n" };
                format!("250-scripted\r\n{tls}{auth}250 8BITMIME\r\n").into_bytes()
            } else if upper == "STARTTLS" {
                let mut r = b"220 go ahead\r\n".to_vec();
                r.extend_from_slice(&self.script.starttls_injection);
                io.get_mut().write_all(&r).await.ok()?;
                return Some(Upgrade);
            } else if upper.starts_with("AUTH PLAIN ") {
                self.auth_line = line.clone();
                self.auth_reply(&line)
            } else if upper.starts_with("AUTH XOAUTH2 ") || upper.starts_with("AUTH OAUTHBEARER ") {
                self.auth_line = line.clone();
                let blob = line.rsplit(' ').next().unwrap_or_default();
                let decoded = String::from_utf8(
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, blob)
                        .unwrap_or_default(),
                )
                .unwrap_or_default();
                let refused = self
                    .script
                    .refused_tokens
                    .iter()
                    .any(|t| decoded.contains(&format!("auth=Bearer {t}\x01")));
                if refused && !self.script.echo_auth {
                    // RFC 7628 §3.2.2: the error is a challenge; the final reply follows the
                    // client's answer to it.
                    io.get_mut()
                        .write_all(b"334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=\r\n")
                        .await
                        .ok()?;
                    let mut answer = String::new();
                    io.read_line(&mut answer).await.ok()?;
                    self.record(answer.trim_end());
                    b"535 5.7.8 Username and Password not accepted\r\n".to_vec()
                } else {
                    self.auth_reply(&line)
                }
            } else if upper == "AUTH LOGIN" {
                login_steps = 2;
                b"334 VXNlcm5hbWU6\r\n".to_vec()
            } else if upper.starts_with("MAIL FROM:") || upper == "RSET" || upper == "NOOP" {
                b"250 2.0.0 ok\r\n".to_vec()
            } else if let Some(rcpt) = upper.strip_prefix("RCPT TO:") {
                self.rcpt_reply(rcpt)
            } else if upper == "DATA" {
                io.get_mut().write_all(b"354 go\r\n").await.ok()?;
                let mut message = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if io.read_until(b'\n', &mut l).await.ok()? == 0 {
                        return None;
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    message.extend_from_slice(&l);
                }
                self.log.lock().unwrap().messages.push(message);
                format!("{}\r\n", self.script.final_reply).into_bytes()
            } else if upper == "QUIT" {
                let _ = io.get_mut().write_all(b"221 bye\r\n").await;
                return None;
            } else {
                b"500 what\r\n".to_vec()
            };
            io.get_mut().write_all(&reply).await.ok()?;
        }
    }

    fn auth_reply(&self, line: &str) -> Vec<u8> {
        if self.script.echo_auth {
            format!("535 5.7.8 you sent: {line}\r\n").into_bytes()
        } else {
            b"235 2.7.0 ok\r\n".to_vec()
        }
    }

    fn rcpt_reply(&self, rcpt: &str) -> Vec<u8> {
        let address = rcpt
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_ascii_lowercase();
        if self.script.echo_auth_in_rcpt {
            return format!(
                "550 5.1.1 <{address}> refused; you logged in with {}\r\n",
                self.auth_line
            )
            .into_bytes();
        }
        let known = &self.script.known_recipients;
        if known.is_empty() || known.contains(&address) {
            b"250 2.1.5 ok\r\n".to_vec()
        } else {
            format!("550 5.1.1 <{address}>: Recipient address rejected: User unknown\r\n")
                .into_bytes()
        }
    }
}
