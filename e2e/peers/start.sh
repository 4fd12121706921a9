#!/usr/bin/env bash
# Starts the real test peers in DIR, all on 127.0.0.1, and writes DIR/env:
#   postfix  submission with STARTTLS and with implicit TLS, AUTH via dovecot SASL, LMTP into
#            dovecot; existing @example.test users get their mail, unknown @example.test
#            recipients are refused (550), every other domain goes to the sink user.
#   dovecot  IMAP with STARTTLS and with implicit TLS, passwd-file users, LMTP, SASL socket.
#   moto     moto_server (KMS) from <repo>/.venv.
#   oauth    oidc-provider and a Google-style JWT-bearer token endpoint (one node process,
#            e2e/peers/oauth/), HTTPS; dovecot (and so postfix) also take XOAUTH2 and
#            OAUTHBEARER, checking each token by introspection (oauth.sh).
# A previous instance in DIR is stopped first; state in DIR is recreated every time.
#
# Usage: e2e/peers/start.sh DIR
# Ports (env overrides): PEERS_SMTP_STARTTLS_PORT=10587 PEERS_SMTP_TLS_PORT=10465
#   PEERS_IMAP_STARTTLS_PORT=10143 PEERS_IMAP_TLS_PORT=10993 PEERS_KMS_PORT=14566
#   PEERS_OAUTH_PORT=14443 PEERS_GOOGLE_TOKEN_PORT=14444. Access-token lifetimes:
#   PEERS_OAUTH_ACCESS_TOKEN_TTL=300, PEERS_OAUTH_SHORT_TTL=2 (the short-TTL client's), seconds.
#   PEERS_BULK_USERS=1000: bulk users user0001@example.test.. (0 skips), passwords in
#   DIR/bulk-users.tsv (0600).
# A default port that is already taken (say by a second peers instance) is replaced by a
# free one and reported; an explicitly given port that is taken is an error.
# PEERS_START_TIMEOUT (seconds, default 30) bounds the wait for the ports.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${PEERS_VENV:-$repo/.venv}"
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$here/../lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=../mailserver/render.sh
source "$here/../mailserver/render.sh"
# shellcheck source-path=SCRIPTDIR source=oauth.sh
source "$here/oauth.sh"

[[ $# -eq 1 ]] || die "usage: $0 DIR"
[[ "$(id -u)" -eq 0 ]] || die "must run as root (postfix and dovecot drop privileges themselves)"
for bin in /usr/sbin/postfix /usr/sbin/dovecot /usr/bin/openssl "$venv/bin/moto_server" /usr/bin/node; do
  [[ -x "$bin" ]] || die "$bin missing: run e2e/peers/install.sh first"
done

t0=$(now_ms)
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
timeout_s="${PEERS_START_TIMEOUT:-30}"

# Dovecot's unix sockets live under DIR/dovecot/run; sun_path holds 107 bytes and dovecot
# appends names like "login/imap-urlauth-worker".
if (( ${#dir} > 70 )); then
  die "DIR path too long for unix sockets (${#dir} > 70 chars): $dir"
fi

if [[ -f "$dir/moto.pid" || -f "$dir/oauth.pid" || -f "$dir/dovecot/run/master.pid" \
  || -f "$dir/postfix/spool/pid/master.pid" ]]; then
  log "stopping the previous instance in $dir"
  "$here/stop.sh" "$dir"
  t0=$(now_ms)
fi

# dovecot's auth (user dovecot) and postfix (user postfix) must reach files under DIR.
chmod 755 "$dir"
d="$dir"
while [[ "$d" != "/" ]]; do
  d="$(dirname "$d")"
  perms="$(stat -c '%a' "$d")"
  if (( (8#$perms & 8#001) == 0 )); then
    die "$d is not world-traversable (mode $perms): postfix and dovecot cannot reach $dir"
  fi
done

# From here on a failed start must not leave half the peers running.
started=0
cleanup_on_failure() {
  if [[ $started -eq 0 ]]; then
    "$here/stop.sh" "$dir" >&2 || true
  fi
}
trap cleanup_on_failure EXIT

rm -rf "$dir/tls" "$dir/postfix" "$dir/dovecot" "$dir/mail" "$dir/env" \
  "$dir"/postfix.log "$dir"/dovecot.log "$dir"/moto.log "$dir"/moto.pid
mkdir -p "$dir/tls" "$dir/postfix" "$dir/dovecot" "$dir/mail"

# ---- ports --------------------------------------------------------------------------------
used_ports=()
choose_port() { # NAME DEFAULT -> prints the port
  local name="$1" default="$2" explicit="${!1:-}" port
  if [[ -n "$explicit" ]]; then
    port_is_free "$explicit" || die "$name=$explicit is already in use"
    port="$explicit"
  else
    port="$default"
    if ! port_is_free "$port" || [[ " ${used_ports[*]} " == *" $port "* ]]; then
      port="$(free_port "${used_ports[@]}")" || die "no free port for $name"
      log "default port $default for $name is taken; using $port"
    fi
  fi
  printf '%s' "$port"
}
smtp_starttls_port=$(choose_port PEERS_SMTP_STARTTLS_PORT 10587); used_ports+=("$smtp_starttls_port")
smtp_tls_port=$(choose_port PEERS_SMTP_TLS_PORT 10465); used_ports+=("$smtp_tls_port")
imap_starttls_port=$(choose_port PEERS_IMAP_STARTTLS_PORT 10143); used_ports+=("$imap_starttls_port")
imap_tls_port=$(choose_port PEERS_IMAP_TLS_PORT 10993); used_ports+=("$imap_tls_port")
kms_port=$(choose_port PEERS_KMS_PORT 14566); used_ports+=("$kms_port")

# ---- moto first: it takes longest to come up (python imports), the rest overlaps it ---------
moto_log="$dir/moto.log"
# setsid: its own session, so stop.sh can find every process of it, and it is no child of
# the caller's process group (a test harness's Ctrl-C should go through stop.sh).
# The inner shell writes its own pid and execs moto, so the pid is right even if setsid forks.
# shellcheck disable=SC2016 # expanded by the inner shell
setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' moto "$dir/moto.pid" \
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$kms_port" >"$moto_log" 2>&1 </dev/null &

# ---- TLS: a test CA and a separate server certificate (webpki rejects a CA as end entity) --
tls="$dir/tls"
make_test_pki "$tls" "mailcred test CA $(date +%s)" localhost "DNS:localhost,IP:127.0.0.1" 30

# ---- OAuth: node starts now, its key generation overlaps dovecot's and postfix's start ----
oauth_prepare "$dir" "$tls" app@example.test \
  app@example.test reader@example.test sink@example.test rotate@example.test
oauth_start

# ---- users --------------------------------------------------------------------------------
user1="app@example.test"
user2="reader@example.test"
sink_user="sink@example.test"
rotate_user="rotate@example.test"
pass1="$(random_password)"
pass2="$(random_password)"
sink_pass="$(random_password)"
rotate_pass="$(random_password)"
mail_root="$dir/mail"
users_file="$dir/dovecot/users"
pf="$dir/postfix"
# uid/gid 5000: dovecot refuses uid 0 for mail users; no passwd entry is needed.
chown 5000:5000 "$mail_root"
chmod 755 "$mail_root"
printf '%s\n' "$user1:$pass1" "$user2:$pass2" "$sink_user:$sink_pass" "$rotate_user:$rotate_pass" \
  | write_mail_users "$users_file" "$pf/vmailbox" "$mail_root"
# Bulk users user0001@example.test.. for the account-set scale tests ({SSHA256}, see
# bulk_users.py for why); PEERS_BULK_USERS=0 skips them.
bulk_count="${PEERS_BULK_USERS:-1000}"
[[ "$bulk_count" =~ ^[0-9]+$ ]] || die "PEERS_BULK_USERS must be a number (got '$bulk_count')"
bulk_file="$dir/bulk-users.tsv"
rm -f "$bulk_file"
if (( bulk_count > 0 )); then
  "$venv/bin/python" "$here/bulk_users.py" "$bulk_count" "$users_file" "$pf/vmailbox" "$mail_root" "$bulk_file" \
    || die "bulk users failed"
fi

# ---- dovecot (e2e/mailserver/dovecot.conf.in) ---------------------------------------------
dovecot_conf="$dir/dovecot/dovecot.conf"
dovecot_run="$dir/dovecot/run"
dovecot_log="$dir/dovecot.log"
# shellcheck disable=SC2034 # read by name in render_template
{
  DOVECOT_INSTANCE="mailcred-peers-$(printf '%s' "$dir" | cksum | cut -d' ' -f1)"
  DOVECOT_RUN="$dovecot_run"
  DOVECOT_STATE="$dir/dovecot/state"
  MAIL_HOSTNAME=peers.example.test
  LISTEN_ADDRESS=127.0.0.1
  DOVECOT_LOG="$dovecot_log"
  TLS_CERT="$tls/server.pem"
  TLS_KEY="$tls/server.key"
  USERS_FILE="$users_file"
  IMAP_STARTTLS_PORT="$imap_starttls_port"
  IMAP_TLS_PORT="$imap_tls_port"
  DOVECOT_LMTP_LISTENER=lmtp
  DOVECOT_AUTH_LISTENER=auth-postfix
  DOVECOT_OAUTH2_ARGS="$oauth_dovecot_conf"
}
render_dovecot_conf "$dovecot_conf"
touch -d '-1 min' "$dovecot_conf"
/usr/sbin/dovecot -c "$dovecot_conf" 2>>"$dovecot_log" || {
  tail -n 30 "$dovecot_log" >&2 || true
  die "dovecot failed to start (config $dovecot_conf)"
}

# ---- postfix (e2e/mailserver/postfix-*.cf.in) ---------------------------------------------
queue="$pf/spool"
postfix_log="$dir/postfix.log"
# shellcheck disable=SC2034 # read by name in render_template
{
  POSTFIX_QUEUE="$queue"
  POSTFIX_DATA="$pf/data"
  POSTFIX_INTERFACES=127.0.0.1
  # Loopback in mynetworks: postfix's per-client connection limits do not apply to it.
  POSTFIX_MYNETWORKS=127.0.0.0/8
  POSTFIX_LOG="$postfix_log"
  POSTFIX_LOG_PREFIXES="$dir"
  SUBMISSION_LISTEN="127.0.0.1:$smtp_starttls_port"
  SUBMISSIONS_LISTEN="127.0.0.1:$smtp_tls_port"
  LMTP_SOCKET="$dovecot_run/lmtp"
  SASL_SOCKET="$dovecot_run/auth-postfix"
  SINK_USER="$sink_user"
}
render_postfix_submission "$pf"
prepare_postfix_queue "$queue" "$pf/data"
# Postfix re-reads config files younger than ~2 s, sleeping 300 ms per try: backdate them.
touch -d '-1 min' "$pf/main.cf" "$pf/master.cf" "$pf/vmailbox" "$pf/virtual_alias" "$users_file"

if ! /usr/sbin/postfix -c "$pf" start >>"$postfix_log" 2>&1; then
  tail -n 30 "$postfix_log" >&2 || true
  die "postfix failed to start (config $pf)"
fi

# ---- env file -----------------------------------------------------------------------------
kms_endpoint="http://127.0.0.1:$kms_port"
env_tmp="$dir/env.tmp"
cat >"$env_tmp" <<EOF
PEERS_DIR=$dir
PEERS_HOST=localhost
PEERS_HOST_IP=127.0.0.1
PEERS_CA_PEM=$tls/ca.pem
PEERS_SMTP_STARTTLS_PORT=$smtp_starttls_port
PEERS_SMTP_TLS_PORT=$smtp_tls_port
PEERS_IMAP_STARTTLS_PORT=$imap_starttls_port
PEERS_IMAP_TLS_PORT=$imap_tls_port
PEERS_KMS_PORT=$kms_port
PEERS_KMS_ENDPOINT=$kms_endpoint
PEERS_USER=$user1
PEERS_PASSWORD=$pass1
PEERS_USER2=$user2
PEERS_PASSWORD2=$pass2
PEERS_SINK_USER=$sink_user
PEERS_SINK_PASSWORD=$sink_pass
PEERS_ROTATE_USER=$rotate_user
PEERS_ROTATE_PASSWORD=$rotate_pass
PEERS_UNKNOWN_RCPT=nobody@example.test
PEERS_BULK_USERS=$bulk_count
PEERS_BULK_USERS_FILE=$bulk_file
PEERS_POSTFIX_LOG=$postfix_log
PEERS_DOVECOT_LOG=$dovecot_log
PEERS_MOTO_LOG=$moto_log
PEERS_MAILDIR_ROOT=$mail_root
PEERS_POSTFIX_CONFIG=$pf
PEERS_DOVECOT_CONFIG=$dovecot_conf
AWS_ENDPOINT_URL=$kms_endpoint
AWS_REGION=us-east-1
AWS_DEFAULT_REGION=us-east-1
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
EOF
oauth_env >>"$env_tmp"
chmod 644 "$env_tmp"

# ---- wait for every port ------------------------------------------------------------------
deadline=$(( $(now_ms) + timeout_s * 1000 ))
wait_port() { # PORT NAME LOG
  local port="$1" name="$2" logf="$3"
  until port_answers "$port"; do
    if (( $(now_ms) > deadline )); then
      log "$name did not answer on 127.0.0.1:$port within ${timeout_s}s; last lines of $logf:"
      tail -n 30 "$logf" >&2 || true
      die "$name failed to start"
    fi
    sleep 0.02
  done
}
wait_port "$imap_starttls_port" "dovecot IMAP (STARTTLS)" "$dovecot_log"
wait_port "$imap_tls_port" "dovecot IMAP (TLS)" "$dovecot_log"
dovecot_ready_ms=$(( $(now_ms) - t0 ))
wait_port "$smtp_starttls_port" "postfix submission (STARTTLS)" "$postfix_log"
wait_port "$smtp_tls_port" "postfix submissions (TLS)" "$postfix_log"
postfix_ready_ms=$(( $(now_ms) - t0 ))
# moto: its port being bound is not enough; wait for an HTTP answer.
until curl -fsS -o /dev/null --max-time 2 "$kms_endpoint/moto-api/data.json" 2>/dev/null; do
  if ! pid_alive "$(cat "$dir/moto.pid")" || (( $(now_ms) > deadline )); then
    log "moto_server did not answer on $kms_endpoint within ${timeout_s}s; last lines of $moto_log:"
    tail -n 30 "$moto_log" >&2 || true
    die "moto_server failed to start"
  fi
  sleep 0.05
done

oauth_wait "$deadline" "$tls/ca.pem"

mv "$env_tmp" "$dir/env"
started=1
log "peers up in $(( $(now_ms) - t0 )) ms (dovecot ${dovecot_ready_ms} ms, postfix" \
  "${postfix_ready_ms} ms, then moto and oauth); env: $dir/env" \
  "(smtp $smtp_starttls_port/$smtp_tls_port imap $imap_starttls_port/$imap_tls_port kms $kms_port" \
  "oauth $oauth_port google $oauth_jwt_port)"
