//! `verify --login`: after the sealed secret opened, log in to each upstream once (the
//! relay's and the proxy's own login paths: mailcred_smtp / mailcred_imap `verify_login`)
//! with the password or an OAuth access token fetched with the sealed grant, and report the
//! server's verdict. Nothing secret is printed: the reasons are scrubbed by the checks.

use std::time::Duration;

use mailcred_core::credential::UsableCredential;

/// Each step of one login check (connect, TLS, greeting, AUTH) is bounded by this.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Logs in to every upstream of `opened`; prints one line each. Fails if any login failed.
pub async fn check(opened: &UsableCredential, timeout: Duration) -> anyhow::Result<()> {
    let how = opened.auth.kind_label();
    let mut failed = Vec::new();
    if let Some(smtp) = &opened.smtp {
        let at = format!("smtp {}:{}", smtp.host, smtp.port);
        match mailcred_smtp::verify_login(smtp, &opened.username, &opened.auth, timeout).await {
            Ok(()) => println!("ok: {at} accepted the login of {} ({how})", opened.username),
            Err(e) => {
                println!("FAILED: {at} ({}): {e}", e.label());
                failed.push(at);
            }
        }
    }
    if let Some(imap) = &opened.imap {
        let at = format!("imap {}:{}", imap.host, imap.port);
        match mailcred_imap::verify_login(imap, &opened.username, &opened.auth, timeout).await {
            Ok(()) => println!("ok: {at} accepted the login of {} ({how})", opened.username),
            Err(e) => {
                println!("FAILED: {at} ({}): {e}", e.label());
                failed.push(at);
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("the login failed at {}", failed.join(" and "));
    }
    Ok(())
}
