//! The OAuth 2.0 part of the real test peers (e2e/peers/oauth, see e2e/peers/README.md
//! "OAuth"): oidc-provider and a Google-style JWT-bearer token endpoint, both HTTPS on
//! 127.0.0.1 with the peers' test CA. dovecot (IMAP) and postfix (SMTP, through dovecot SASL)
//! take XOAUTH2 and OAUTHBEARER and check each token by introspection at oidc-provider.

use std::path::PathBuf;
use std::time::Duration;

use super::PeersEnv;

/// What a test needs to get tokens from the OAuth peers. Secrets here are throw-away test data
/// of one peers run.
#[derive(Debug, Clone)]
pub struct OAuthPeers {
    /// `PEERS_OAUTH_ISSUER`: `https://localhost:PORT`, oidc-provider's issuer.
    pub issuer: String,
    /// `PEERS_OAUTH_TOKEN_ENDPOINT`: every grant but JWT-bearer.
    pub token_endpoint: String,
    /// `PEERS_OAUTH_AUTHORIZATION_ENDPOINT`: authorization code + PKCE (S256 required).
    pub authorization_endpoint: String,
    /// `PEERS_OAUTH_DEVICE_ENDPOINT`: RFC 8628 device authorization.
    pub device_endpoint: String,
    /// `PEERS_OAUTH_INTROSPECTION_ENDPOINT`: RFC 7662 (what dovecot calls).
    pub introspection_endpoint: String,
    /// `PEERS_OAUTH_REVOCATION_ENDPOINT`: RFC 7009, by the client the token was issued to.
    pub revocation_endpoint: String,
    /// `PEERS_OAUTH_SCOPE`: `mail`, the scope dovecot requires of every token.
    pub scope: String,
    /// `PEERS_OAUTH_CLIENT_ID`: `client_secret_post`; client credentials, device flow,
    /// refresh without rotation.
    pub client_id: String,
    /// `PEERS_OAUTH_CLIENT_SECRET`: the secret of `client_id`, `rotate_client_id` and
    /// `short_client_id`.
    pub client_secret: String,
    /// `PEERS_OAUTH_ROTATE_CLIENT_ID`: `client_secret_post`, device flow, refresh tokens
    /// rotated; reusing a rotated-out one revokes the whole grant.
    pub rotate_client_id: String,
    /// `PEERS_OAUTH_JWT_CLIENT_ID`: `private_key_jwt` (RS256); client credentials, device flow.
    pub jwt_client_id: String,
    /// `PEERS_OAUTH_JWT_KEY_PEM`: its private key (PKCS#8 PEM), made per start.
    pub jwt_key_pem: PathBuf,
    /// `PEERS_OAUTH_JWT_KEY_ID`: the `kid` its public JWK is registered under.
    pub jwt_key_id: String,
    /// `PEERS_OAUTH_NATIVE_CLIENT_ID`: public client (no secret); device flow, authorization
    /// code + PKCE, refresh tokens rotated.
    pub native_client_id: String,
    /// `PEERS_OAUTH_NATIVE_REDIRECT_URI`: `http://127.0.0.1/callback`; any port is accepted.
    pub native_redirect_uri: String,
    /// `PEERS_OAUTH_SHORT_CLIENT_ID`: like `client_id`, but its access tokens live `short_ttl`.
    pub short_client_id: String,
    /// `PEERS_OAUTH_ACCESS_TOKEN_TTL`: every other client's access-token lifetime.
    pub access_token_ttl: Duration,
    /// `PEERS_OAUTH_SHORT_TTL`: `short_client_id`'s access-token lifetime.
    pub short_ttl: Duration,
    /// `PEERS_OAUTH_LOGIN_PASSWORD`: the sign-in page's password for every mailbox.
    pub login_password: String,
    /// `PEERS_OAUTH_TOKEN_LOG`: one line per token request (both servers).
    pub token_log: PathBuf,
    /// `PEERS_GOOGLE_TOKEN_ENDPOINT`: the JWT-bearer endpoint (the key file's `token_uri`).
    pub google_token_endpoint: String,
    /// `PEERS_GOOGLE_REVOKE_ENDPOINT`: Google-style `POST token=...` revocation.
    pub google_revoke_endpoint: String,
    /// `PEERS_GOOGLE_SA_KEY_FILE`: the service-account JSON key file, as Google hands it out.
    pub google_sa_key_file: PathBuf,
    /// `PEERS_GOOGLE_SA_EMAIL`: its `client_email`, the assertion's `iss`.
    pub google_sa_email: String,
    /// `PEERS_GOOGLE_SCOPE`: `https://mail.google.com/`, the one delegated scope.
    pub google_scope: String,
}

impl PeersEnv {
    /// The OAuth peers of this env file; panics naming a missing key (only ignored tests call
    /// this).
    pub fn oauth(&self) -> OAuthPeers {
        let s = |key: &str| self.get(key).to_owned();
        let secs = |key: &str| {
            let value = self.get(key);
            Duration::from_secs(
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("{key}={value} in the peers env is not seconds")),
            )
        };
        OAuthPeers {
            issuer: s("PEERS_OAUTH_ISSUER"),
            token_endpoint: s("PEERS_OAUTH_TOKEN_ENDPOINT"),
            authorization_endpoint: s("PEERS_OAUTH_AUTHORIZATION_ENDPOINT"),
            device_endpoint: s("PEERS_OAUTH_DEVICE_ENDPOINT"),
            introspection_endpoint: s("PEERS_OAUTH_INTROSPECTION_ENDPOINT"),
            revocation_endpoint: s("PEERS_OAUTH_REVOCATION_ENDPOINT"),
            scope: s("PEERS_OAUTH_SCOPE"),
            client_id: s("PEERS_OAUTH_CLIENT_ID"),
            client_secret: s("PEERS_OAUTH_CLIENT_SECRET"),
            rotate_client_id: s("PEERS_OAUTH_ROTATE_CLIENT_ID"),
            jwt_client_id: s("PEERS_OAUTH_JWT_CLIENT_ID"),
            jwt_key_pem: s("PEERS_OAUTH_JWT_KEY_PEM").into(),
            jwt_key_id: s("PEERS_OAUTH_JWT_KEY_ID"),
            native_client_id: s("PEERS_OAUTH_NATIVE_CLIENT_ID"),
            native_redirect_uri: s("PEERS_OAUTH_NATIVE_REDIRECT_URI"),
            short_client_id: s("PEERS_OAUTH_SHORT_CLIENT_ID"),
            access_token_ttl: secs("PEERS_OAUTH_ACCESS_TOKEN_TTL"),
            short_ttl: secs("PEERS_OAUTH_SHORT_TTL"),
            login_password: s("PEERS_OAUTH_LOGIN_PASSWORD"),
            token_log: s("PEERS_OAUTH_TOKEN_LOG").into(),
            google_token_endpoint: s("PEERS_GOOGLE_TOKEN_ENDPOINT"),
            google_revoke_endpoint: s("PEERS_GOOGLE_REVOKE_ENDPOINT"),
            google_sa_key_file: s("PEERS_GOOGLE_SA_KEY_FILE").into(),
            google_sa_email: s("PEERS_GOOGLE_SA_EMAIL"),
            google_scope: s("PEERS_GOOGLE_SCOPE"),
        }
    }
}

impl OAuthPeers {
    /// How many lines of the token-request log have every `key=value` of `fields`, e.g.
    /// `&[("client_id", &o.client_id), ("outcome", "ok")]`: the token requests so far.
    pub fn token_requests(&self, fields: &[(&str, &str)]) -> usize {
        let text = std::fs::read_to_string(&self.token_log)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.token_log.display()));
        count_matching(&text, fields)
    }
}

fn count_matching(text: &str, fields: &[(&str, &str)]) -> usize {
    text.lines()
        .filter(|line| {
            let pairs: Vec<(&str, &str)> = line
                .split(' ')
                .skip(1)
                .filter_map(|kv| kv.split_once('='))
                .collect();
            fields.iter().all(|f| pairs.contains(f))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_with_every_field() {
        let log = "\
2026-12-02T00:40:00.123Z endpoint=oidc outcome=ok client_id=a grant_type=client_credentials username=x@example.test
2026-12-02T00:40:00.200Z endpoint=oidc outcome=error client_id=a grant_type=client_credentials error=invalid_scope
2026-12-02T00:40:01.000Z endpoint=jwt-bearer outcome=ok client_id=b grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
";
        assert_eq!(count_matching(log, &[("client_id", "a")]), 2);
        assert_eq!(
            count_matching(log, &[("client_id", "a"), ("outcome", "ok")]),
            1
        );
        assert_eq!(count_matching(log, &[("endpoint", "jwt-bearer")]), 1);
        assert_eq!(count_matching(log, &[]), 3);
        // A value is matched whole, not as a prefix.
        assert_eq!(count_matching(log, &[("client_id", "")]), 0);
    }

    /// The env file start.sh writes has every OAuth key, with lifetimes and existing files.
    #[test]
    #[ignore = "needs the real peers: e2e/peers/start.sh DIR, MAILCRED_PEERS_ENV=DIR/env"]
    fn real_peers_env_has_the_oauth_part() {
        let oauth = super::super::peers_env().oauth();
        assert!(oauth.token_endpoint.starts_with(&oauth.issuer), "{oauth:?}");
        assert!(oauth.short_ttl < oauth.access_token_ttl);
        for path in [
            &oauth.jwt_key_pem,
            &oauth.google_sa_key_file,
            &oauth.token_log,
        ] {
            assert!(path.is_file(), "{} missing", path.display());
        }
        assert_eq!(oauth.token_requests(&[("client_id", "no-such-client")]), 0);
    }
}
