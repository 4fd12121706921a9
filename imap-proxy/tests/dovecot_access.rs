//! Against the real dovecot: seen-only access (mark read and unread, nothing else) and LIST
//! children flags that show only what the policy allows.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use mailcred_core::crd::{ImapPolicy, TlsMode};
use mailcred_imap::ImapProxyConfig;

struct Peers(std::collections::HashMap<String, String>);

impl Peers {
    fn load() -> Self {
        Self(peers_env())
    }
    fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from the peers env file"))
    }
    /// The sink user's maildir folder (`None`: INBOX), created as dovecot would.
    fn folder(&self, folder: Option<&str>) -> PathBuf {
        let home = Path::new(self.get("PEERS_MAILDIR_ROOT")).join(self.get("PEERS_SINK_USER"));
        let mut dir = home.join("Maildir");
        if let Some(f) = folder {
            dir = dir.join(format!(".{f}"));
        }
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mut p = dir.join("cur");
        while p.starts_with(&home) {
            std::os::unix::fs::chown(&p, Some(5000), Some(5000)).unwrap();
            if !p.pop() {
                break;
            }
        }
        for sub in ["new", "tmp"] {
            std::os::unix::fs::chown(dir.join(sub), Some(5000), Some(5000)).unwrap();
        }
        dir
    }
    async fn proxy(&self, imap: ImapPolicy) -> RunningProxy {
        let ca = std::fs::read_to_string(self.get("PEERS_CA_PEM")).unwrap();
        let source = SealedSource::new(
            Some(endpoint(
                self.get("PEERS_HOST"),
                self.get("PEERS_IMAP_TLS_PORT").parse().unwrap(),
                TlsMode::Implicit,
                Some(ca),
            )),
            self.get("PEERS_SINK_USER"),
            self.get("PEERS_SINK_PASSWORD"),
            imap,
        )
        .await;
        start_proxy(ImapProxyConfig::default(), source).await
    }
}

fn marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("mc{}x{}", std::process::id(), nanos % 1_000_000_000)
}

fn deliver(maildir: &Path, subject: &str) {
    let name = format!("{subject}.test");
    let msg = format!(
        "From: sender@example.test\r\nTo: sink@example.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.test>\r\n\r\nhello\r\n"
    );
    let tmp = maildir.join("tmp").join(&name);
    std::fs::write(&tmp, msg).unwrap();
    std::os::unix::fs::chown(&tmp, Some(5000), Some(5000)).unwrap();
    std::fs::rename(&tmp, maildir.join("new").join(&name)).unwrap();
}

async fn logged_in(proxy: &RunningProxy) -> Client {
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("l1", "LOGIN app x").await;
    assert!(last(&r).starts_with("l1 OK [CAPABILITY "), "{r:?}");
    c
}

fn seen_only(mailboxes: &[&str]) -> ImapPolicy {
    ImapPolicy {
        seen_only: true,
        ..policy(true, mailboxes)
    }
}

async fn flags_of(c: &mut Client, tag: &str, uid: &str) -> String {
    let r = c.cmd(tag, &format!("UID FETCH {uid} FLAGS")).await;
    assert!(last(&r).starts_with(&format!("{tag} OK")), "{r:?}");
    r.iter()
        .find(|l| l.contains("FETCH"))
        .cloned()
        .unwrap_or_else(|| panic!("no FETCH in {r:?}"))
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn seen_only_marks_read_and_unread_and_refuses_every_other_change() {
    let peers = Peers::load();
    let subject = marker();
    deliver(&peers.folder(None), &subject);
    let proxy = peers.proxy(seen_only(&["INBOX"])).await;
    let mut c = logged_in(&proxy).await;
    // SELECT stays SELECT: clients that refuse a read-only mailbox (fetchmail) work.
    let r = c.cmd("a1", "SELECT INBOX").await;
    assert!(last(&r).starts_with("a1 OK [READ-WRITE]"), "{r:?}");
    let r = c.cmd("a2", &format!("UID SEARCH SUBJECT {subject}")).await;
    let uid = r
        .iter()
        .find_map(|l| l.strip_prefix("* SEARCH "))
        .unwrap_or_else(|| panic!("{r:?}"))
        .trim()
        .to_owned();
    // fetchmail's way of marking a message read.
    let r = c
        .cmd("a3", &format!("UID STORE {uid} +FLAGS (\\Seen)"))
        .await;
    assert!(last(&r).starts_with("a3 OK"), "{r:?}");
    for (tag, command) in [
        ("b1", format!("UID STORE {uid} +FLAGS (\\Deleted)")),
        ("b2", format!("UID STORE {uid} +FLAGS (\\Seen \\Flagged)")),
        ("b3", format!("UID STORE {uid} FLAGS (\\Seen)")),
        ("b4", "STORE 1 -FLAGS \\Answered".to_owned()),
    ] {
        let r = c.cmd(tag, &command).await;
        assert_eq!(
            last(&r),
            format!(
                "{tag} NO [NOPERM] Seen-only access: this credential's policy allows only setting and clearing \\Seen"
            ),
            "{command}"
        );
    }
    for (tag, command) in [
        ("c1", "EXPUNGE".to_owned()),
        ("c2", format!("UID EXPUNGE {uid}")),
        ("c3", "COPY 1 INBOX".to_owned()),
        ("c4", "CREATE Other".to_owned()),
    ] {
        let r = c.cmd(tag, &command).await;
        assert!(
            last(&r).starts_with(&format!("{tag} NO [NOPERM] Seen-only access")),
            "{command}: {r:?}"
        );
    }
    let r = c.cmd("c5", "APPEND INBOX {5+}\r\nhello").await;
    assert!(
        last(&r).starts_with("c5 NO [NOPERM] Seen-only access"),
        "{r:?}"
    );
    // CLOSE would expunge: it goes upstream as UNSELECT.
    let r = c.cmd("a4", "CLOSE").await;
    assert!(last(&r).starts_with("a4 OK"), "{r:?}");
    let r = c.cmd("a5", "LOGOUT").await;
    assert!(last(&r).starts_with("a5 OK"), "{r:?}");

    // A new session sees the change persisted, and nothing else changed.
    let mut c = logged_in(&proxy).await;
    let r = c.cmd("d1", "EXAMINE INBOX").await;
    assert!(last(&r).starts_with("d1 OK"), "{r:?}");
    let flags = flags_of(&mut c, "d2", &uid).await;
    assert!(flags.contains("\\Seen"), "{flags}");
    assert!(
        !flags.contains("\\Deleted") && !flags.contains("\\Flagged"),
        "{flags}"
    );
    let r = c.cmd("d3", "SELECT INBOX").await;
    assert!(last(&r).starts_with("d3 OK [READ-WRITE]"), "{r:?}");
    let r = c
        .cmd("d4", &format!("UID STORE {uid} -FLAGS.SILENT (\\Seen)"))
        .await;
    assert!(last(&r).starts_with("d4 OK"), "{r:?}");
    let flags = flags_of(&mut c, "d5", &uid).await;
    assert!(!flags.contains("\\Seen"), "{flags}");
    proxy.stop().await;
}

#[tokio::test]
#[ignore = "needs real peers (e2e/peers/start.sh); run by scripts/test.sh"]
async fn list_shows_children_only_when_the_policy_allows_one() {
    let peers = Peers::load();
    let parent = format!("Parent{}", marker());
    peers.folder(Some(&parent));
    peers.folder(Some(&format!("{parent}.Child")));

    // The child is hidden: the parent must not claim children.
    let proxy = peers.proxy(policy(true, &["INBOX", &parent])).await;
    let mut c = logged_in(&proxy).await;
    for (tag, command) in [
        ("a1", format!("LIST \"\" \"{parent}*\"")),
        ("a2", format!("LIST \"\" \"{parent}*\" RETURN (CHILDREN)")),
        ("a3", "LIST \"\" \"*\"".to_owned()),
    ] {
        let r = c.cmd(tag, &command).await;
        assert!(last(&r).starts_with(&format!("{tag} OK")), "{r:?}");
        let listed: Vec<&String> = r.iter().filter(|l| l.contains(&parent)).collect();
        assert_eq!(listed.len(), 1, "only the parent: {r:?}");
        assert!(
            listed[0].contains("\\HasNoChildren"),
            "{command}: {listed:?}"
        );
        assert!(
            !listed[0].contains("\\HasChildren"),
            "{command}: {listed:?}"
        );
    }
    proxy.stop().await;

    // The child is allowed: dovecot's \HasChildren stands.
    let proxy = peers
        .proxy(policy(true, &["INBOX", &format!("{parent}*")]))
        .await;
    let mut c = logged_in(&proxy).await;
    let r = c.cmd("b1", &format!("LIST \"\" \"{parent}*\"")).await;
    let listed: Vec<&String> = r.iter().filter(|l| l.contains(&parent)).collect();
    assert_eq!(listed.len(), 2, "{r:?}");
    let parent_line = listed
        .iter()
        .find(|l| l.ends_with(&parent))
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(parent_line.contains("\\HasChildren"), "{parent_line}");
    proxy.stop().await;
}
