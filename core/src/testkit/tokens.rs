//! A scripted [`AccessTokenSource`] for the front-ends' tests: hands out `PREFIX-1`,
//! `PREFIX-2`, … (a new one only after [`AccessTokenSource::rejected`]), or fails with a
//! given token error, and counts fetches and rejections.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::SecretString;

use crate::upstream_auth::{AccessToken, AccessTokenSource};
use crate::{Error, TokenError};

pub struct StubTokens {
    prefix: String,
    /// `Some`: every fetch fails with a copy of this (kind chosen by the test).
    fail: Option<fn() -> TokenError>,
    generation: Mutex<u64>,
    fetches: AtomicUsize,
    rejections: AtomicUsize,
}

impl StubTokens {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            fail: None,
            generation: Mutex::new(1),
            fetches: AtomicUsize::new(0),
            rejections: AtomicUsize::new(0),
        }
    }

    pub fn failing(error: fn() -> TokenError) -> Self {
        Self {
            fail: Some(error),
            ..Self::new("unused")
        }
    }

    /// Calls of `access_token` (cache hits included).
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub fn rejections(&self) -> usize {
        self.rejections.load(Ordering::SeqCst)
    }

    /// The token of generation `n`, as the upstream will see it.
    pub fn token(&self, n: u64) -> String {
        format!("{}-{n}", self.prefix)
    }
}

#[async_trait]
impl AccessTokenSource for StubTokens {
    async fn access_token(&self) -> Result<AccessToken, Error> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if let Some(fail) = self.fail {
            return Err(Error::Token(fail()));
        }
        let n = *self.generation.lock().unwrap_or_else(|p| p.into_inner());
        Ok(AccessToken::new(
            SecretString::from(self.token(n)),
            n,
            Instant::now() + Duration::from_secs(300),
        ))
    }

    fn rejected(&self, token: &AccessToken) {
        self.rejections.fetch_add(1, Ordering::SeqCst);
        let mut generation = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        if *generation == token.generation {
            *generation += 1;
        }
    }
}

/// Access tokens from the real oidc-provider of the peers (client credentials for `mailbox`,
/// through `python -m mailcred_e2e.oauth`, the e2e library's client), for the front-ends'
/// end-to-end tests. `client` is the library's name: `secret`, or `short` (2 s tokens).
/// Blocking on purpose: tests only, one short POST per token.
pub struct PeerTokens {
    mailbox: String,
    client: &'static str,
    generation: Mutex<u64>,
    fetches: AtomicUsize,
}

impl PeerTokens {
    pub fn new(mailbox: &str, client: &'static str) -> Self {
        Self {
            mailbox: mailbox.to_owned(),
            client,
            generation: Mutex::new(0),
            fetches: AtomicUsize::new(0),
        }
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl AccessTokenSource for PeerTokens {
    async fn access_token(&self) -> Result<AccessToken, Error> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/../e2e/lib");
        let out = std::process::Command::new("python3")
            .args(["-m", "mailcred_e2e.oauth", "client-credentials"])
            .args(["--client", self.client, "--mailbox", &self.mailbox])
            .env("PYTHONPATH", lib)
            .output()
            .map_err(|e| Error::Token(TokenError::Config(e.to_string())))?;
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| {
            Error::Token(TokenError::Config(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ))
        })?;
        let token = reply["access_token"]
            .as_str()
            .ok_or_else(|| Error::Token(TokenError::Config("no access_token".into())))?;
        let expires_in = reply["expires_in"].as_u64().unwrap_or(60);
        let mut generation = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        *generation += 1;
        Ok(AccessToken::new(
            SecretString::from(token.to_owned()),
            *generation,
            Instant::now() + Duration::from_secs(expires_in),
        ))
    }

    fn rejected(&self, _token: &AccessToken) {}
}
