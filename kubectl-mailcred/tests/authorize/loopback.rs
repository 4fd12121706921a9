//! The loopback redirect of `--flow code`: a redirect with another `state` is refused and
//! ends the run without exchanging the code; the server's `access_denied` is a clear error;
//! no redirect within `--timeout` ends it. The token endpoint is a tripwire: no row may
//! reach it.

use std::time::{Duration, Instant};

use crate::support::{Running, Tripwire, http_get, local_key, query_param};

fn code_flow(dir: &std::path::Path, wire: &Tripwire, timeout: &str) -> Running {
    let key = local_key(dir);
    let args: Vec<String> = [
        "authorize",
        "--flow",
        "code",
        "--name",
        "billing",
        "--namespace",
        "shop",
        "--username",
        "app@example.test",
        "--imap",
        "imap.example.test:993",
        "--service-account",
        "billing-api",
        "--kms",
        &format!("local:{}", key.display()),
        "--oauth-provider",
        "generic",
        "--client-id",
        "mailcred-native",
        "--token-endpoint",
        &wire.url("/token"),
        "--authorization-endpoint",
        "https://auth.example.test/authorize?tenant=t1",
        "--scope",
        "mail",
        "--scope",
        "offline_access",
        "--timeout",
        timeout,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Running::start(&args)
}

/// The authorization URL printed on stderr.
fn printed_url(run: &mut Running) -> String {
    run.wait_line(Duration::from_secs(30), |l| {
        l.starts_with("https://auth.example.test/authorize?tenant=t1&")
            .then(|| l.to_string())
    })
}

#[test]
fn the_printed_url_asks_for_s256_and_a_loopback_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let wire = Tripwire::new();
    let mut run = code_flow(dir.path(), &wire, "2s");
    let url = printed_url(&mut run);
    assert_eq!(
        query_param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query_param(&url, "code_challenge").map(|c| c.len()),
        Some(43)
    );
    assert_eq!(query_param(&url, "response_type").as_deref(), Some("code"));
    assert_eq!(
        query_param(&url, "scope").as_deref(),
        Some("mail offline_access")
    );
    let redirect = query_param(&url, "redirect_uri").unwrap();
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
    assert!(redirect.ends_with("/callback"), "{redirect}");
    assert!(query_param(&url, "state").unwrap().len() >= 22);
    let (ok, stdout, stderr) = run.finish(Duration::from_secs(20));
    assert!(!ok && stdout.is_empty(), "{stderr}");
}

#[test]
fn a_redirect_with_another_state_is_refused_and_the_code_not_exchanged() {
    let dir = tempfile::tempdir().unwrap();
    let wire = Tripwire::new();
    let mut run = code_flow(dir.path(), &wire, "60s");
    let url = printed_url(&mut run);
    let redirect = query_param(&url, "redirect_uri").unwrap();
    // Not the callback: answered 404, the run goes on.
    let base = redirect.trim_end_matches("/callback");
    assert_eq!(http_get(&format!("{base}/favicon.ico")), 404);
    assert_eq!(
        http_get(&format!("{redirect}?code=stolen-code&state=forged")),
        400
    );
    let (ok, stdout, stderr) = run.finish(Duration::from_secs(20));
    assert!(!ok, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("state does not match"), "{stderr}");
    assert!(!stderr.contains("stolen-code"), "{stderr}");
    wire.assert_untouched("state mismatch");
}

#[test]
fn a_denied_sign_in_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let wire = Tripwire::new();
    let mut run = code_flow(dir.path(), &wire, "60s");
    let url = printed_url(&mut run);
    let redirect = query_param(&url, "redirect_uri").unwrap();
    let state = query_param(&url, "state").unwrap();
    assert_eq!(
        http_get(&format!("{redirect}?error=access_denied&state={state}")),
        200
    );
    let (ok, stdout, stderr) = run.finish(Duration::from_secs(20));
    assert!(!ok && stdout.is_empty(), "{stderr}");
    assert!(
        stderr.contains("the sign-in was denied (access_denied)"),
        "{stderr}"
    );
    wire.assert_untouched("denied");
}

#[test]
fn no_redirect_within_the_timeout_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let wire = Tripwire::new();
    let mut run = code_flow(dir.path(), &wire, "2s");
    printed_url(&mut run);
    let started = Instant::now();
    let (ok, stdout, stderr) = run.finish(Duration::from_secs(20));
    assert!(!ok && stdout.is_empty(), "{stderr}");
    assert!(stderr.contains("no sign-in within 2 s"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    wire.assert_untouched("timeout");
}
