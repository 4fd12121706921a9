//! The token cache of one credential: one token kept until shortly before it expires,
//! single-flight fetches (any number of callers wait on one request), a bounded backoff after
//! failures, rotated refresh tokens kept in memory.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mailcred_core::upstream_auth::{AccessToken, AccessTokenSource};
use mailcred_core::{Error, TokenError};
use secrecy::SecretString;

use crate::grant::Grant;
use crate::http::{self, Endpoint, HttpLimits};
use crate::metrics::TokenMetrics;
use crate::reply;

/// Refresh this far ahead of expiry at most (10 % of the lifetime when that is shorter).
const MAX_EARLY: Duration = Duration::from_secs(60);
/// A token this close to expiry is not handed out even while a refresh is failing: the
/// session still has to log in with it.
const LAST_USE: Duration = Duration::from_secs(5);
/// Backoff after a failed request: doubles from the first value up to the second.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

struct Cached {
    token: AccessToken,
    refresh_at: Instant,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    generation: u64,
    /// The refresh token to use next (the sealed one, then each rotated one).
    refresh_token: Option<SecretString>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<TokenError>,
}

/// An [`AccessTokenSource`] for one credential.
pub struct TokenSource {
    grant: Grant,
    endpoint: Endpoint,
    limits: HttpLimits,
    metrics: TokenMetrics,
    state: Mutex<State>,
    /// Held while a request is in flight: the single flight.
    fetch: tokio::sync::Mutex<()>,
    /// Names the credential in the rotation warning (client id and endpoint, no secret).
    warn_key: String,
}

impl TokenSource {
    pub fn new(
        grant: Grant,
        refresh_token: Option<SecretString>,
        endpoint: Endpoint,
        limits: HttpLimits,
        metrics: TokenMetrics,
        warn_key: String,
    ) -> Self {
        Self {
            grant,
            endpoint,
            limits,
            metrics,
            state: Mutex::new(State {
                refresh_token,
                ..State::default()
            }),
            fetch: tokio::sync::Mutex::new(()),
            warn_key,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached token if it is before its refresh time (`Fresh`) or still usable.
    fn cached(&self, now: Instant) -> Cachedness {
        let state = self.state();
        match &state.current {
            Some(c) if now < c.refresh_at => Cachedness::Fresh(c.token.clone()),
            Some(c) if now + LAST_USE < c.token.expires_at => Cachedness::Usable(c.token.clone()),
            _ => Cachedness::None,
        }
    }

    /// One token request, its outcome stored and counted.
    async fn fetch_now(&self) -> Result<AccessToken, TokenError> {
        let refresh_token = self.state().refresh_token.clone();
        let (form, authorization) = self.grant.request(refresh_token.as_ref())?;
        let result = match http::post_form(&self.endpoint, self.limits, form, authorization).await {
            Ok(reply) => reply::parse(&self.endpoint.url, &reply),
            Err(e) => Err(e),
        };
        self.metrics.requested(
            self.grant.label(),
            match &result {
                Ok(_) => "ok",
                Err(e) => e.metric_label(),
            },
        );
        let now = Instant::now();
        let mut state = self.state();
        match result {
            Ok(issued) => {
                state.generation += 1;
                let expires_at = now + issued.lifetime;
                let early = MAX_EARLY.min(issued.lifetime / 10);
                let token = AccessToken::new(issued.access_token, state.generation, expires_at);
                state.current = Some(Cached {
                    token: token.clone(),
                    refresh_at: expires_at - early,
                });
                if let Some(rotated) = issued.refresh_token
                    && refresh_token.is_some()
                {
                    warn_rotation_once(&self.warn_key);
                    state.refresh_token = Some(rotated);
                }
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
                Ok(token)
            }
            Err(e) => {
                let backoff = BACKOFF_FIRST
                    .saturating_mul(1u32 << state.failures.min(6))
                    .min(BACKOFF_MAX);
                state.failures = state.failures.saturating_add(1);
                state.retry_at = Some(now + backoff);
                state.last_error = Some(copy(&e));
                tracing::warn!(
                    endpoint = %self.endpoint.url,
                    grant = self.grant.label(),
                    error = %e,
                    backoff_ms = backoff.as_millis() as u64,
                    "OAuth token request failed"
                );
                Err(e)
            }
        }
    }

    /// During the backoff after a failure: that failure again, without a request.
    fn backing_off(&self, now: Instant) -> Option<TokenError> {
        let state = self.state();
        match (state.retry_at, &state.last_error) {
            (Some(at), Some(e)) if now < at => Some(copy(e)),
            _ => None,
        }
    }
}

enum Cachedness {
    Fresh(AccessToken),
    Usable(AccessToken),
    None,
}

#[async_trait]
impl AccessTokenSource for TokenSource {
    async fn access_token(&self) -> Result<AccessToken, Error> {
        let stale = match self.cached(Instant::now()) {
            Cachedness::Fresh(t) => return Ok(t),
            Cachedness::Usable(t) => Some(t),
            Cachedness::None => None,
        };
        // Past the refresh time but still valid: refresh ahead, but callers arriving while
        // that request is in flight keep using the valid token instead of waiting.
        let _flight = match (&stale, self.fetch.try_lock()) {
            (_, Ok(guard)) => guard,
            (Some(t), Err(_)) => return Ok(t.clone()),
            (None, Err(_)) => self.fetch.lock().await,
        };
        // Whoever held the flight before may have fetched what we need.
        let now = Instant::now();
        if let Cachedness::Fresh(t) = self.cached(now) {
            return Ok(t);
        }
        if let Some(e) = self.backing_off(now) {
            return match stale {
                Some(t) => Ok(t),
                None => Err(Error::Token(e)),
            };
        }
        match self.fetch_now().await {
            Ok(t) => Ok(t),
            // A failed refresh ahead of expiry keeps the still-valid token in use.
            Err(e) => match stale {
                Some(t) if Instant::now() + LAST_USE < t.expires_at => Ok(t),
                _ => Err(Error::Token(e)),
            },
        }
    }

    fn rejected(&self, token: &AccessToken) {
        let mut state = self.state();
        // Only the generation that failed goes: an old session's rejection keeps a newer token.
        if state
            .current
            .as_ref()
            .is_some_and(|c| c.token.generation == token.generation)
        {
            state.current = None;
            // A rejection is not an endpoint failure: the next call may fetch at once.
            state.retry_at = None;
        }
    }
}

/// `TokenError` is not `Clone` (it is core's); its fields are plain data.
fn copy(e: &TokenError) -> TokenError {
    match e {
        TokenError::Unreachable { endpoint, detail } => TokenError::Unreachable {
            endpoint: endpoint.clone(),
            detail: detail.clone(),
        },
        TokenError::Timeout { endpoint, seconds } => TokenError::Timeout {
            endpoint: endpoint.clone(),
            seconds: *seconds,
        },
        TokenError::HttpStatus { endpoint, status } => TokenError::HttpStatus {
            endpoint: endpoint.clone(),
            status: *status,
        },
        TokenError::Refused {
            endpoint,
            code,
            hint,
        } => TokenError::Refused {
            endpoint: endpoint.clone(),
            code: code.clone(),
            hint,
        },
        TokenError::Malformed { endpoint, reason } => TokenError::Malformed {
            endpoint: endpoint.clone(),
            reason: reason.clone(),
        },
        TokenError::TooLarge { endpoint, limit } => TokenError::TooLarge {
            endpoint: endpoint.clone(),
            limit: *limit,
        },
        TokenError::Config(m) => TokenError::Config(m.clone()),
    }
}

/// Rotating refresh tokens live only in this process: another replica (or this one after a
/// restart or the secret-cache TTL) presents the sealed, rotated-out token, and a server with
/// reuse detection (oidc-provider's rotateRefreshToken) then revokes the whole grant. Said once
/// per credential, not per refresh.
fn warn_rotation_once(key: &str) {
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut warned = WARNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if warned.len() < 1024 && warned.insert(key.to_string()) {
        tracing::warn!(
            credential = key,
            "the token endpoint rotated the refresh token: refreshToken grants with rotation cannot be shared by replicas (nor survive a restart or the secret-cache TTL when the server revokes reused refresh tokens); use clientCredentials, or turn rotation off for this client"
        );
    }
}
