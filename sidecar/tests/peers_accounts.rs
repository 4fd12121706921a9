//! The sidecar binary in account-set mode against the real peers (postfix + dovecot):
//! `--account-set crm --credential-dir DIR --write-app-token PATH`, two accounts sealed with
//! the local KMS for two real mailboxes. The app picks the account with SMTP AUTH PLAIN (the
//! account's name, the app token); an unknown account, a wrong token and a deleted account get
//! the same refusal; each account sends as its own mailbox.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailcred_core::crd::{MailCredential, TlsMode, UpstreamEndpoint};
use mailcred_core::kms::LocalKms;
use mailcred_core::testkit::{PeersEnv, TestCredential, peers_env};

struct Sidecar {
    child: Child,
    smtp: u16,
    admin: u16,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn endpoint(env: &PeersEnv) -> UpstreamEndpoint {
    UpstreamEndpoint {
        host: env.get("PEERS_HOST").into(),
        port: env.port("PEERS_SMTP_STARTTLS_PORT"),
        tls: TlsMode::Starttls,
        ca_pem: Some(env.ca_pem()),
        insecure: false,
        insecure_reason: None,
    }
}

/// Writes `resource` with its labels (the set label) into `dir`, in one rename.
fn write(dir: &Path, resource: &MailCredential) {
    let name = resource.metadata.name.clone().unwrap();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(resource).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.yaml"))).unwrap();
}

fn start(dir: &Path, key: &Path, token: &Path, log: &Path) -> Sidecar {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mailcred-sidecar"))
        .args([
            "--account-set",
            "crm",
            "--namespace",
            "ns",
            "--service-account",
            "app",
        ])
        .arg("--credential-dir")
        .arg(dir)
        .arg("--write-app-token")
        .arg(token)
        .arg("--local-key-file")
        .arg(key)
        .args([
            "--no-aws",
            "--smtp-listen",
            "127.0.0.1:0",
            "--imap-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--file-poll-ms",
            "100",
        ])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // Killed and waited for on drop, also when the start-up below fails.
    let mut sidecar = Sidecar {
        child,
        smtp: 0,
        admin: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("mailcred sidecar serving"))
        {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let port = |f: &str| {
                v[f].as_str()
                    .unwrap()
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .port()
            };
            sidecar.smtp = port("smtp");
            sidecar.admin = port("admin");
            return sidecar;
        }
        assert!(Instant::now() < deadline, "sidecar did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SEND_PY: &str = r#"
import json, smtplib, sys
port, user, token, sender, rcpt, subject = sys.argv[1:7]
try:
    s = smtplib.SMTP('127.0.0.1', int(port), local_hostname='app.local', timeout=60)
    s.ehlo()
    s.login(user, token)
    s.sendmail(sender, [rcpt], ('From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nhello\r\n' % (sender, rcpt, subject)).encode())
    s.quit()
    print(json.dumps({'code': 250, 'msg': 'sent'}))
except smtplib.SMTPResponseException as e:
    print(json.dumps({'code': e.smtp_code, 'msg': e.smtp_error.decode(errors='replace')}))
"#;

/// (code, message) of one AUTH PLAIN + send as `user` with `token`.
fn send(
    sidecar: &Sidecar,
    user: &str,
    token: &str,
    from: &str,
    to: &str,
    subject: &str,
) -> (u16, String) {
    let out = Command::new("python3")
        .args(["-c", SEND_PY])
        .args([&sidecar.smtp.to_string(), user, token, from, to, subject])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (
        v["code"].as_u64().unwrap() as u16,
        v["msg"].as_str().unwrap().to_owned(),
    )
}

fn delivered(env: &PeersEnv, user: &str, subject: &str) -> bool {
    let local = user.split('@').next().unwrap();
    let root = PathBuf::from(env.get("PEERS_MAILDIR_ROOT"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for candidate in [root.join(user), root.join(local)] {
            for sub in ["new", "cur"] {
                let Ok(entries) = std::fs::read_dir(candidate.join("Maildir").join(sub)) else {
                    continue;
                };
                for e in entries.flatten() {
                    let f = std::fs::File::open(e.path()).unwrap();
                    if BufReader::new(f)
                        .lines()
                        .map_while(Result::ok)
                        .any(|l| l.contains(subject))
                    {
                        return true;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn accounts_are_picked_per_connection_and_refused_alike_when_unknown_or_gone() {
    let env = peers_env();
    let tmp = tempfile::tempdir().unwrap();
    let (creds, key, token_path) = (
        tmp.path().join("creds"),
        tmp.path().join("key"),
        tmp.path().join("app-token"),
    );
    std::fs::create_dir(&creds).unwrap();
    let kms = LocalKms::generate().unwrap();
    kms.write_new_key_file(&key).unwrap();
    let (user1, user2) = (
        env.get("PEERS_USER").to_owned(),
        env.get("PEERS_USER2").to_owned(),
    );
    for (name, user, password) in [
        ("alice", &user1, env.get("PEERS_PASSWORD")),
        ("bob", &user2, env.get("PEERS_PASSWORD2")),
    ] {
        let r = TestCredential::new("ns", name)
            .account_set("crm")
            .smtp_endpoint(endpoint(&env))
            .username(user)
            .sealed(&kms, password)
            .await;
        write(&creds, &r);
    }
    let sidecar = start(&creds, &key, &token_path, &tmp.path().join("sidecar.log"));
    let token = std::fs::read_to_string(&token_path)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    let ready = Command::new(env!("CARGO_BIN_EXE_mailcred-sidecar"))
        .args([
            "probe",
            "--url",
            &format!("http://127.0.0.1:{}/readyz", sidecar.admin),
        ])
        .status()
        .unwrap();
    assert!(ready.success(), "ready once the directory was read");

    let stamp = std::process::id();
    let s1 = format!("acct-alice-{stamp}");
    let s2 = format!("acct-bob-{stamp}");
    assert_eq!(send(&sidecar, "alice", &token, &user1, &user1, &s1).0, 250);
    assert_eq!(send(&sidecar, "bob", &token, &user2, &user2, &s2).0, 250);
    assert!(
        delivered(&env, &user1, &s1),
        "alice's message in her mailbox"
    );
    assert!(delivered(&env, &user2, &s2), "bob's message in his mailbox");

    let wrong_token = send(
        &sidecar,
        "alice",
        "not-the-token-at-all-0000000000000",
        &user1,
        &user1,
        "x",
    );
    let unknown = send(&sidecar, "mallory", &token, &user1, &user1, "x");
    assert_ne!(wrong_token.0, 250);
    assert_eq!(
        wrong_token, unknown,
        "an unknown account looks like a wrong token"
    );

    std::fs::remove_file(creds.join("alice.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = loop {
        let r = send(&sidecar, "alice", &token, &user1, &user1, "after-delete");
        if r.0 != 250 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        gone, unknown,
        "a deleted account is refused like an unknown one"
    );
    assert_eq!(
        send(&sidecar, "bob", &token, &user2, &user2, &format!("{s2}-2")).0,
        250
    );
}
