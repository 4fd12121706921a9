//! Policy edits reach sessions that are already open: each command runs under the policy the
//! credential source holds now (its `outline()`, no decryption), and a session that cannot
//! go on under the new policy ends with a BYE saying why.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::scripted::{self, Received, Script};
use common::*;
use mailcred_core::Error as CoreError;
use mailcred_core::crd::{ImapPolicy, TlsMode};
use mailcred_core::credential::{CredentialOutline, CredentialSource, UsableCredential};
use mailcred_imap::ImapProxyConfig;

/// A sealed source whose loaded policy the test edits, as the sidecar's watch would.
struct EditableSource {
    sealed: Arc<SealedSource>,
    imap: Mutex<ImapPolicy>,
}

impl EditableSource {
    fn edit(&self, f: impl FnOnce(&mut ImapPolicy)) {
        f(&mut self.imap.lock().unwrap());
    }
}

#[async_trait]
impl CredentialSource for EditableSource {
    async fn credential(&self) -> Result<Arc<UsableCredential>, CoreError> {
        let cred = self.sealed.credential().await?;
        let mut policy = cred.policy.clone();
        policy.imap = self.imap.lock().unwrap().clone();
        Ok(Arc::new(UsableCredential {
            namespace: cred.namespace.clone(),
            name: cred.name.clone(),
            username: cred.username.clone(),
            smtp: cred.smtp.clone(),
            imap: cred.imap.clone(),
            policy,
            oauth: None,
            sealed_fingerprint: cred.sealed_fingerprint.clone(),
            auth: cred.auth.duplicate(),
        }))
    }

    fn outline(&self) -> Option<CredentialOutline> {
        let policy = mailcred_core::crd::Policy {
            imap: self.imap.lock().unwrap().clone(),
            ..Default::default()
        };
        Some(CredentialOutline {
            id: format!("{NS}/{NAME}"),
            policy,
        })
    }
}

/// An upstream that accepts everything, SELECT read-write.
fn script() -> Script {
    Arc::new(|r: &Received| match r.name.as_str() {
        "SELECT" => format!("* 3 EXISTS\r\n{} OK [READ-WRITE] selected\r\n", r.tag).into_bytes(),
        "EXAMINE" => format!("* 3 EXISTS\r\n{} OK [READ-ONLY] examined\r\n", r.tag).into_bytes(),
        _ => scripted::ok(r),
    })
}

async fn setup(imap: ImapPolicy) -> (Arc<EditableSource>, RunningProxy) {
    let upstream = scripted::start("IMAP4rev1 LITERAL+ UNSELECT", script()).await;
    let sealed = SealedSource::new(
        Some(endpoint(
            "localhost",
            upstream.port,
            TlsMode::Implicit,
            Some(upstream.ca_pem.clone()),
        )),
        "app@example.test",
        "s3cret-Pass-long-enough",
        imap.clone(),
    )
    .await;
    let source = Arc::new(EditableSource {
        sealed,
        imap: Mutex::new(imap),
    });
    let proxy = start_proxy(ImapProxyConfig::default(), source.clone()).await;
    (source, proxy)
}

async fn logged_in(proxy: &RunningProxy) -> Client {
    let mut c = Client::connect(proxy.addr).await;
    let r = c.cmd("a0", "LOGIN app x").await;
    assert!(last(&r).starts_with("a0 OK"), "{r:?}");
    c
}

#[tokio::test]
async fn a_mailbox_removed_from_the_policy_is_refused_in_open_sessions() {
    let (source, proxy) = setup(policy(true, &["INBOX", "Archive"])).await;
    let mut c = logged_in(&proxy).await;
    let r = c.cmd("a1", "EXAMINE Archive").await;
    assert!(last(&r).starts_with("a1 OK"), "{r:?}");
    let r = c.cmd("a2", "EXAMINE INBOX").await;
    assert!(last(&r).starts_with("a2 OK"), "{r:?}");
    source.edit(|p| p.allowed_mailboxes = vec!["INBOX".into()]);
    // Opened before the edit, asked after it: refused like in a new session.
    let r = c.cmd("a3", "EXAMINE Archive").await;
    assert_eq!(
        last(&r),
        "a3 NO [NOPERM] Mailbox not allowed by this credential's policy"
    );
    let r = c.cmd("a4", "STATUS Archive (MESSAGES)").await;
    assert!(last(&r).starts_with("a4 NO [NOPERM]"), "{r:?}");
    let r = c.cmd("a5", "NOOP").await;
    assert!(
        last(&r).starts_with("a5 OK"),
        "INBOX is still selected and allowed: {r:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn the_selected_mailbox_leaving_the_policy_ends_the_session_with_bye() {
    let (source, proxy) = setup(policy(true, &["INBOX", "Archive"])).await;
    let mut c = logged_in(&proxy).await;
    let r = c.cmd("a1", "EXAMINE Archive").await;
    assert!(last(&r).starts_with("a1 OK"), "{r:?}");
    source.edit(|p| p.allowed_mailboxes = vec!["INBOX".into()]);
    c.send(b"a2 FETCH 1 FLAGS\r\n").await;
    assert_eq!(
        c.line().await.as_deref(),
        Some(
            "* BYE [NOPERM] The selected mailbox is no longer allowed by this credential's policy"
        )
    );
    assert!(c.closed().await);
    let metrics = proxy.metrics_text();
    assert!(
        metrics.contains("mailcred_imap_sessions_total{outcome=\"policy_changed\"} 1"),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn read_only_turned_on_while_selected_read_write_ends_the_session() {
    let (source, proxy) = setup(policy(false, &["INBOX"])).await;
    let mut c = logged_in(&proxy).await;
    let r = c.cmd("a1", "SELECT INBOX").await;
    assert!(last(&r).starts_with("a1 OK [READ-WRITE]"), "{r:?}");
    let r = c.cmd("a2", "STORE 1 +FLAGS (\\Deleted)").await;
    assert!(
        last(&r).starts_with("a2 OK"),
        "read-write before the edit: {r:?}"
    );
    source.edit(|p| p.read_only = true);
    c.send(b"a3 STORE 1 +FLAGS (\\Deleted)\r\n").await;
    assert_eq!(
        c.line().await.as_deref(),
        Some(
            "* BYE [NOPERM] This credential's policy became read-only while a mailbox was open for changes; log in again"
        )
    );
    assert!(c.closed().await);
    proxy.stop().await;
}

#[tokio::test]
async fn read_only_turned_on_without_a_selection_refuses_the_next_write() {
    let (source, proxy) = setup(policy(false, &["INBOX", "Lists/*"])).await;
    let mut c = logged_in(&proxy).await;
    let r = c.cmd("a1", "CREATE Lists/new").await;
    assert!(last(&r).starts_with("a1 OK"), "{r:?}");
    source.edit(|p| p.read_only = true);
    let r = c.cmd("a2", "CREATE Lists/newer").await;
    assert_eq!(
        last(&r),
        "a2 NO [NOPERM] Read-only access: this credential's policy forbids changes"
    );
    // SELECT is now EXAMINE, and CAPABILITY no longer offers write extensions.
    let r = c.cmd("a3", "SELECT INBOX").await;
    assert!(last(&r).starts_with("a3 OK [READ-ONLY]"), "{r:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn imap_disabled_while_idle_ends_the_session_without_a_command() {
    let (source, proxy) = setup(policy(true, &["INBOX"])).await;
    let mut c = logged_in(&proxy).await;
    source.edit(|p| p.enabled = false);
    // No command sent: the session's tick notices within its period.
    assert_eq!(
        c.line().await.as_deref(),
        Some("* BYE [NOPERM] IMAP was disabled for this credential")
    );
    assert!(c.closed().await);
    proxy.stop().await;
}
