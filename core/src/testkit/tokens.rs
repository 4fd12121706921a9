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
