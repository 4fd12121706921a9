# The OAuth 2.0 part of the peers, sourced by start.sh after e2e/lib/common.sh: oidc-provider
# and the Google-style JWT-bearer endpoint (e2e/peers/oauth/server.mjs, one node process), and
# the file dovecot's oauth2 passdb reads (token introspection over TLS).
# Functions run in this order: oauth_prepare (ports, config, dovecot file), oauth_start (after
# the test PKI exists), oauth_wait (readiness), oauth_env (the env file's lines).
# shellcheck shell=bash

oauth_dir_of_scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")/oauth" && pwd)"

# Test data, not secrets of anyone: the client ids the Rust tests and the bench name.
oauth_client_secret_id=mailcred-secret
oauth_client_rotate_id=mailcred-rotate
oauth_client_jwt_id=mailcred-jwt
oauth_client_native_id=mailcred-native
oauth_client_short_id=mailcred-short
oauth_client_introspect_id=dovecot-introspect
oauth_sa_client_id=100000000000000000001
oauth_sa_email=mailcred-sa@mailcred-test.iam.gserviceaccount.com
oauth_google_scope=https://mail.google.com/

# oauth_prepare DIR TLS_DIR DEFAULT_MAILBOX MAILBOX... : sets oauth_port, oauth_jwt_port and
# the other oauth_* variables; writes DIR/oauth/config.json and DIR/dovecot/oauth2.conf.ext.
oauth_prepare() {
  local dir="$1" tls="$2" default_mailbox="$3"
  shift 3
  oauth_port=$(choose_port PEERS_OAUTH_PORT 14443); used_ports+=("$oauth_port")
  oauth_jwt_port=$(choose_port PEERS_GOOGLE_TOKEN_PORT 14444); used_ports+=("$oauth_jwt_port")
  oauth_ttl="${PEERS_OAUTH_ACCESS_TOKEN_TTL:-300}"
  oauth_short_ttl="${PEERS_OAUTH_SHORT_TTL:-2}"
  [[ "$oauth_ttl" =~ ^[1-9][0-9]*$ && "$oauth_short_ttl" =~ ^[1-9][0-9]*$ ]] \
    || die "PEERS_OAUTH_ACCESS_TOKEN_TTL and PEERS_OAUTH_SHORT_TTL must be whole seconds > 0"
  oauth_issuer="https://localhost:$oauth_port"
  oauth_state="$dir/oauth"
  oauth_log="$dir/oauth.log"
  oauth_token_log="$dir/oauth-token-requests.log"
  oauth_client_secret="$(random_password)"
  oauth_login_password="$(random_password)"
  oauth_key_pem="$oauth_state/client-jwt.key.pem"
  oauth_key_id="mailcred-peers-jwt-$(date +%s)"
  oauth_sa_file="$oauth_state/service-account.json"
  local introspect_secret mailboxes
  introspect_secret="$(random_password)"
  mailboxes="$(printf '"%s",' "$@")"
  rm -rf "$oauth_state" "$oauth_log" "$oauth_token_log" "$dir/oauth.pid"
  mkdir -m 700 "$oauth_state"
  # Values are addresses, URLs, paths and hex: no JSON escaping needed.
  cat >"$oauth_state/config.json" <<EOF
{
  "port": $oauth_port, "jwtBearerPort": $oauth_jwt_port,
  "tlsCert": "$tls/server.pem", "tlsKey": "$tls/server.key",
  "tokenLog": "$oauth_token_log",
  "mailboxes": [${mailboxes%,}], "defaultMailbox": "$default_mailbox",
  "clientKeyPem": "$oauth_key_pem", "clientKeyId": "$oauth_key_id",
  "clients": {"secret": "$oauth_client_secret_id", "rotate": "$oauth_client_rotate_id",
    "jwt": "$oauth_client_jwt_id", "native": "$oauth_client_native_id",
    "short": "$oauth_client_short_id", "introspect": "$oauth_client_introspect_id"},
  "clientSecret": "$oauth_client_secret", "introspectSecret": "$introspect_secret",
  "accessTokenTtl": $oauth_ttl, "shortTtl": $oauth_short_ttl,
  "loginPassword": "$oauth_login_password",
  "serviceAccount": {"clientId": "$oauth_sa_client_id", "clientEmail": "$oauth_sa_email",
    "projectId": "mailcred-test", "keyFile": "$oauth_sa_file",
    "authorizedScopes": ["$oauth_google_scope"], "mailScope": "$oauth_google_scope"}
}
EOF
  chmod 600 "$oauth_state/config.json"

  # dovecot's oauth2 passdb: POST token=... to the introspection endpoint with HTTP Basic
  # (the URL's userinfo), verify the server against the test CA, then require active=true,
  # the `mail` scope, and username (the token's mailbox) = the SASL user (username_format %Lu
  # on both sides). 127.0.0.1, not localhost: dovecot's HTTP client would ask its DNS service.
  oauth_dovecot_conf="$dir/dovecot/oauth2.conf.ext"
  cat >"$oauth_dovecot_conf" <<EOF
# Rendered by e2e/peers/oauth.sh for a test run.
introspection_mode = post
introspection_url = https://$oauth_client_introspect_id:$introspect_secret@127.0.0.1:$oauth_port/token/introspection
username_attribute = username
active_attribute = active
active_value = true
scope = mail
tls_ca_cert_file = $tls/ca.pem
timeout_msecs = 5000
EOF
  # Read by dovecot's auth process (user dovecot), not by anyone else.
  chgrp dovecot "$oauth_dovecot_conf"
  chmod 640 "$oauth_dovecot_conf"
}

oauth_start() {
  [[ -d "$oauth_dir_of_scripts/node_modules/oidc-provider" ]] \
    || die "$oauth_dir_of_scripts/node_modules missing: run e2e/peers/install.sh first"
  # Its own session, like moto, so stop.sh finds it; the inner shell records its own pid.
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid bash -c 'echo $$ >"$1"; shift; cd "$1"; shift; exec "$@"' oauth "$dir/oauth.pid" \
    "$oauth_dir_of_scripts" node server.mjs "$oauth_state/config.json" \
    >"$oauth_log" 2>&1 </dev/null &
}

# Ready when both listeners answer over verified TLS (node writes the key files before it
# listens, so they exist then too).
oauth_wait() {
  local deadline="$1" ca="$2" url
  for url in "$oauth_issuer/.well-known/openid-configuration" "https://localhost:$oauth_jwt_port/token"; do
    until curl -sS -o /dev/null --max-time 2 --cacert "$ca" "$url" 2>/dev/null; do
      if ! pid_alive "$(cat "$dir/oauth.pid" 2>/dev/null || echo 0)" || (( $(now_ms) > deadline )); then
        log "the OAuth server did not answer $url; last lines of $oauth_log:"
        tail -n 30 "$oauth_log" >&2 || true
        die "the OAuth server (oidc-provider) failed to start"
      fi
      sleep 0.05
    done
  done
}

oauth_env() {
  cat <<EOF
PEERS_OAUTH_ISSUER=$oauth_issuer
PEERS_OAUTH_PORT=$oauth_port
PEERS_OAUTH_TOKEN_ENDPOINT=$oauth_issuer/token
PEERS_OAUTH_AUTHORIZATION_ENDPOINT=$oauth_issuer/auth
PEERS_OAUTH_DEVICE_ENDPOINT=$oauth_issuer/device/auth
PEERS_OAUTH_INTROSPECTION_ENDPOINT=$oauth_issuer/token/introspection
PEERS_OAUTH_REVOCATION_ENDPOINT=$oauth_issuer/token/revocation
PEERS_OAUTH_SCOPE=mail
PEERS_OAUTH_CLIENT_ID=$oauth_client_secret_id
PEERS_OAUTH_CLIENT_SECRET=$oauth_client_secret
PEERS_OAUTH_ROTATE_CLIENT_ID=$oauth_client_rotate_id
PEERS_OAUTH_JWT_CLIENT_ID=$oauth_client_jwt_id
PEERS_OAUTH_JWT_KEY_PEM=$oauth_key_pem
PEERS_OAUTH_JWT_KEY_ID=$oauth_key_id
PEERS_OAUTH_NATIVE_CLIENT_ID=$oauth_client_native_id
PEERS_OAUTH_NATIVE_REDIRECT_URI=http://127.0.0.1/callback
PEERS_OAUTH_SHORT_CLIENT_ID=$oauth_client_short_id
PEERS_OAUTH_ACCESS_TOKEN_TTL=$oauth_ttl
PEERS_OAUTH_SHORT_TTL=$oauth_short_ttl
PEERS_OAUTH_LOGIN_PASSWORD=$oauth_login_password
PEERS_OAUTH_TOKEN_LOG=$oauth_token_log
PEERS_OAUTH_LOG=$oauth_log
PEERS_GOOGLE_TOKEN_ENDPOINT=https://localhost:$oauth_jwt_port/token
PEERS_GOOGLE_REVOKE_ENDPOINT=https://localhost:$oauth_jwt_port/revoke
PEERS_GOOGLE_TOKEN_PORT=$oauth_jwt_port
PEERS_GOOGLE_SA_KEY_FILE=$oauth_sa_file
PEERS_GOOGLE_SA_EMAIL=$oauth_sa_email
PEERS_GOOGLE_SCOPE=$oauth_google_scope
PEERS_DOVECOT_OAUTH2_CONFIG=$oauth_dovecot_conf
EOF
}
