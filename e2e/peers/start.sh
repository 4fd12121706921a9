#!/usr/bin/env bash
# Starts the real test peers in DIR, all on 127.0.0.1, and writes DIR/env:
#   postfix  submission with STARTTLS and with implicit TLS, AUTH via dovecot SASL, LMTP into
#            dovecot; existing @example.test users get their mail, unknown @example.test
#            recipients are refused (550), every other domain goes to the sink user.
#   dovecot  IMAP with STARTTLS and with implicit TLS, passwd-file users, LMTP, SASL socket.
#   moto     moto_server (KMS) from <repo>/.venv.
# A previous instance in DIR is stopped first; state in DIR is recreated every time.
#
# Usage: e2e/peers/start.sh DIR
# Ports (env overrides): PEERS_SMTP_STARTTLS_PORT=10587 PEERS_SMTP_TLS_PORT=10465
#   PEERS_IMAP_STARTTLS_PORT=10143 PEERS_IMAP_TLS_PORT=10993 PEERS_KMS_PORT=14566.
# A default port that is already taken (say by a second peers instance) is replaced by a
# free one and reported; an explicitly given port that is taken is an error.
# PEERS_START_TIMEOUT (seconds, default 30) bounds the wait for the ports.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${PEERS_VENV:-$repo/.venv}"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

[[ $# -eq 1 ]] || die "usage: $0 DIR"
[[ "$(id -u)" -eq 0 ]] || die "must run as root (postfix and dovecot drop privileges themselves)"
for bin in /usr/sbin/postfix /usr/sbin/dovecot /usr/bin/openssl "$venv/bin/moto_server"; do
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

if [[ -f "$dir/moto.pid" || -f "$dir/dovecot/run/master.pid" \
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
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 30 -subj "/CN=mailcred test CA $(date +%s)" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$tls/server.key" -out "$tls/server.csr" -subj "/CN=localhost" 2>/dev/null
printf '%s\n' "basicConstraints=critical,CA:FALSE" \
  "keyUsage=critical,digitalSignature" \
  "extendedKeyUsage=serverAuth" \
  "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$tls/server.ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
  -CAcreateserial -days 30 -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
rm -f "$tls/server.csr" "$tls/ca.srl"
chmod 600 "$tls/ca.key" "$tls/server.key"
chmod 644 "$tls/ca.pem" "$tls/server.pem"

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
# uid/gid 5000: dovecot refuses uid 0 for mail users; no passwd entry is needed.
chown 5000:5000 "$mail_root"
chmod 755 "$mail_root"
users=("$user1" "$user2" "$sink_user" "$rotate_user")
# One openssl run hashes every line it reads (4 forks fewer on the start path).
mapfile -t hashes < <(printf '%s\n' "$pass1" "$pass2" "$sink_pass" "$rotate_pass" | openssl passwd -6 -stdin)
[[ ${#hashes[@]} -eq ${#users[@]} ]] || die "password hashing failed"
for i in "${!users[@]}"; do
  printf '%s:{SHA512-CRYPT}%s:5000:5000::%s::\n' "${users[$i]}" "${hashes[$i]}" "$mail_root/${users[$i]}"
done >"$users_file"
chmod 644 "$users_file"

# ---- dovecot ------------------------------------------------------------------------------
dovecot_conf="$dir/dovecot/dovecot.conf"
dovecot_run="$dir/dovecot/run"
dovecot_log="$dir/dovecot.log"
dh_setting=""
[[ -f /usr/share/dovecot/dh.pem ]] && dh_setting="ssl_dh = </usr/share/dovecot/dh.pem"
cat >"$dovecot_conf" <<EOF
# Generated by e2e/peers/start.sh for a test run; not a production configuration.
instance_name = mailcred-peers-$(printf '%s' "$dir" | cksum | cut -d' ' -f1)
base_dir = $dovecot_run
state_dir = $dir/dovecot/state
protocols = imap lmtp
# Explicit, so nothing waits on resolving the machine's own host name.
hostname = peers.example.test
listen = 127.0.0.1
log_path = $dovecot_log
info_log_path = $dovecot_log
debug_log_path = $dovecot_log
log_timestamp = "%Y-%m-%d %H:%M:%S "
auth_verbose = yes
login_trusted_networks =
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_max_userip_connections = 10000

ssl = required
ssl_cert = <$tls/server.pem
ssl_key = <$tls/server.key
ssl_min_protocol = TLSv1.2
$dh_setting
disable_plaintext_auth = yes

auth_mechanisms = plain login
# Tests fail logins on purpose and rotate passwords: no delay, no cache.
auth_failure_delay = 0
auth_cache_size = 0
passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%u $users_file
}
userdb {
  driver = passwd-file
  args = username_format=%u $users_file
}

service anvil {
  # No 2-15 s penalty after failed logins from the same IP.
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_starttls_port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imap_tls_port
    ssl = yes
  }
  # High-performance mode: long-lived login processes, one per core, many clients each.
  service_count = 0
  process_min_avail = 2
  client_limit = 1000
}
service imap {
  process_limit = 512
}
service lmtp {
  unix_listener lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
service auth {
  unix_listener auth-postfix {
    mode = 0600
    user = postfix
    group = postfix
  }
}
protocol lmtp {
  postmaster_address = postmaster@example.test
}
EOF
touch -d '-1 min' "$dovecot_conf"
/usr/sbin/dovecot -c "$dovecot_conf" 2>>"$dovecot_log" || {
  tail -n 30 "$dovecot_log" >&2 || true
  die "dovecot failed to start (config $dovecot_conf)"
}

# ---- postfix ------------------------------------------------------------------------------
pf="$dir/postfix"
queue="$pf/spool"
postfix_log="$dir/postfix.log"
cat >"$pf/main.cf" <<EOF
# Generated by e2e/peers/start.sh for a test run; not a production configuration.
compatibility_level = 3.7
queue_directory = $queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = peers.example.test
mydomain = example.test
myorigin = example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file = $postfix_log
maillog_file_prefixes = $dir
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0
smtpd_banner = \$myhostname ESMTP mailcred test peer
message_size_limit = 26214400

# Existing @example.test users get their own mail through LMTP into dovecot; an unknown one
# is refused with 550. Every other domain is rewritten to the sink user, so nothing tries to
# leave the machine. virtual_alias_domains must be empty, or the catch-all turns every
# recipient into "User unknown in virtual alias table".
virtual_mailbox_domains = example.test
virtual_mailbox_maps = texthash:$pf/vmailbox
virtual_alias_domains =
virtual_alias_maps = regexp:$pf/virtual_alias
virtual_transport = lmtp:unix:$dovecot_run/lmtp
# Fail closed: should the catch-all ever miss, a message is bounced here, never sent out.
default_transport = error:5.7.1 mailcred test peer delivers nothing off this machine
relay_transport = error:5.7.1 mailcred test peer delivers nothing off this machine
lmtp_destination_recipient_limit = 50

smtpd_tls_cert_file = $tls/server.pem
smtpd_tls_key_file = $tls/server.key
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_protocols = >=TLSv1.2
smtpd_sasl_type = dovecot
smtpd_sasl_path = $dovecot_run/auth-postfix
smtpd_sasl_auth_enable = yes
smtpd_sasl_security_options = noanonymous
smtpd_sasl_authenticated_header = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
EOF
{
  printf '%s OK\n' "$user1" "$user2" "$sink_user" "$rotate_user"
} >"$pf/vmailbox"
printf '!/@example\\.test$/ %s\n' "$sink_user" >"$pf/virtual_alias"

# No port-25 listener; chroot off everywhere, so absolute socket paths work. Up to 300
# concurrent sessions per port (default 100) for load tests through the proxy; loopback is
# in mynetworks, so postfix's per-client connection limits do not apply to it.
cat >"$pf/master.cf" <<EOF
127.0.0.1:$smtp_starttls_port inet n - n - 300 smtpd
  -o syslog_name=postfix/submission
127.0.0.1:$smtp_tls_port inet n - n - 300 smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

# Queue directories made here (ownership as postfix-files has it) plus the quick-start
# marker let "postfix start" skip its 0.5-2 s integrity scan.
postfix_owned=("$pf/data")
for q in active bounce corrupt defer deferred flush hold incoming saved trace private; do
  postfix_owned+=("$queue/$q")
done
mkdir -m 755 "$queue" "$queue/pid"
mkdir -m 700 "${postfix_owned[@]}" "$queue/maildrop" "$queue/public"
chown postfix:root "${postfix_owned[@]}"
chown postfix:postdrop "$queue/maildrop" "$queue/public"
chmod 1730 "$queue/maildrop"
chmod 2710 "$queue/public"
touch "$queue/quick-start"
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

mv "$env_tmp" "$dir/env"
started=1
log "peers up in $(( $(now_ms) - t0 )) ms (dovecot ${dovecot_ready_ms} ms, postfix" \
  "${postfix_ready_ms} ms, moto last); env: $dir/env" \
  "(smtp $smtp_starttls_port/$smtp_tls_port imap $imap_starttls_port/$imap_tls_port kms $kms_port)"
