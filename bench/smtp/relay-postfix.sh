#!/usr/bin/env bash
# Starts a second postfix in DIR as the usual "SMTP relay sidecar": listens on 127.0.0.1:PORT
# without AUTH, queues, and relays everything to the peers' submission port over verified
# STARTTLS with smtp_sasl_password_maps. Usage: relay-postfix.sh DIR PORT PEERS_ENV PASSWORD_FILE
# Stop: kill "$(head -1 DIR/spool/pid/master.pid)".
set -euo pipefail
dir="$1" port="$2" env="$3" pwfile="$4"
# shellcheck disable=SC1090
source "$env"
rm -rf "$dir"; mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"; chmod 755 "$dir"
q="$dir/spool"
cat >"$dir/main.cf" <<CF
compatibility_level = 3.7
queue_directory = $q
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.bench.local
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = $dir/postfix.log
maillog_file_prefixes = $dir
smtpd_peername_lookup = no
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [$PEERS_HOST]:$PEERS_SMTP_STARTTLS_PORT
# No DNS on these machines: /etc/hosts only.
smtp_host_lookup = native
smtp_tls_security_level = secure
smtp_tls_CAfile = $PEERS_CA_PEM
smtp_tls_secure_cert_match = nexthop
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = texthash:$dir/sasl_passwd
smtp_sasl_security_options = noanonymous
smtp_connection_cache_on_demand = yes
default_destination_concurrency_limit = 20
message_size_limit = 26214400
CF
printf '[%s]:%s %s:%s\n' "$PEERS_HOST" "$PEERS_SMTP_STARTTLS_PORT" "$PEERS_USER" "$(cat "$pwfile")" >"$dir/sasl_passwd"
chmod 600 "$dir/sasl_passwd"
cat >"$dir/master.cf" <<CF
127.0.0.1:$port inet n - n - 300 smtpd
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
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CF
owned=("$dir/data")
for d in active bounce corrupt defer deferred flush hold incoming saved trace private; do owned+=("$q/$d"); done
mkdir -m 755 "$q" "$q/pid"
mkdir -m 700 "${owned[@]}" "$q/maildrop" "$q/public"
chown postfix:root "${owned[@]}"
chown postfix:postdrop "$q/maildrop" "$q/public"
chmod 1730 "$q/maildrop"; chmod 2710 "$q/public"
touch "$q/quick-start"
touch -d '-1 min' "$dir/main.cf" "$dir/master.cf" "$dir/sasl_passwd"
/usr/sbin/postfix -c "$dir" start
for _ in $(seq 100); do
  ss -ltn "sport = :$port" | grep -q LISTEN && exit 0
  sleep 0.05
done
echo "relay postfix did not listen on $port" >&2; exit 1
