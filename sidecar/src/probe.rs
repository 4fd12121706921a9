//! `mailcred-sidecar probe --url http://127.0.0.1:15090/readyz`: the exec probe the operator
//! injects. kubelet's httpGet dials the pod IP, which the loopback-only admin listener does not
//! serve, and the distroless image has no curl; so the binary probes itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mailcred_core::sidecar_contract as contract;

const TIMEOUT: Duration = Duration::from_secs(2);

/// Exit code of the probe: 0 when the endpoint answers 200.
pub fn run(args: &[String]) -> std::process::ExitCode {
    match probe(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probe failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn probe(args: &[String]) -> Result<(), String> {
    let (url, addr, path) = target(args)?;
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    // The status line may arrive in pieces; 64 bytes hold "HTTP/1.1 NNN reason".
    let mut head = Vec::with_capacity(64);
    let mut chunk = [0u8; 64];
    while head.len() < 64 && !head.contains(&b'\n') {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("{addr}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let status_line = String::from_utf8_lossy(&head);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(format!("{url} answered {code}")),
        None => Err(format!("{url} sent no HTTP status")),
    }
}

/// The probe's arguments (`--url URL`, what the webhook writes) as the URL, address and path.
pub(crate) fn target(args: &[String]) -> Result<(&str, SocketAddr, &str), String> {
    let url = match args {
        [flag, url] if *flag == contract::flag(contract::PROBE_URL_FLAG) => url.as_str(),
        _ => return Err("usage: mailcred-sidecar probe --url http://127.0.0.1:PORT/PATH".into()),
    };
    let (addr, path) = parse_url(url)?;
    Ok((url, addr, path))
}

/// Only `http://IP:PORT/PATH` on loopback: the probe never reaches off the pod.
fn parse_url(url: &str) -> Result<(SocketAddr, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = host_port
        .parse()
        .map_err(|_| format!("{url}: expected IP:PORT"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{url}: the probe only checks loopback addresses"));
    }
    Ok((addr, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_loopback_ip_and_port_only() {
        assert_eq!(
            parse_url("http://127.0.0.1:15090/readyz").unwrap(),
            ("127.0.0.1:15090".parse().unwrap(), "/readyz")
        );
        assert!(parse_url("http://10.0.0.1:15090/readyz").is_err());
        assert!(parse_url("https://127.0.0.1:1/").is_err());
        assert!(parse_url("http://localhost:1/").is_err());
    }

    #[test]
    fn a_closed_port_fails_and_a_200_passes() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let url = format!("http://127.0.0.1:{port}/readyz");
        assert!(probe(&["--url".into(), url]).is_err());

        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/readyz", server.local_addr().unwrap());
        let answer = std::thread::spawn(move || {
            for code in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = server.accept().unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 512];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "client closed before sending its request");
                    request.extend_from_slice(&buf[..n]);
                }
                write!(s, "HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").unwrap();
            }
        });
        let first = probe(&["--url".into(), url.clone()]);
        assert!(first.is_ok(), "{first:?}");
        let err = probe(&["--url".into(), url]).unwrap_err();
        assert!(err.contains("503"), "{err}");
        answer.join().unwrap();
    }
}
