#!/usr/bin/env bash
# Starts a second postfix in DIR as the usual "SMTP relay sidecar": listens on 127.0.0.1:PORT
# without AUTH, queues, and relays everything to the peers' submission port over verified
# STARTTLS with smtp_sasl_password_maps. Configured from e2e/mailserver's relay templates.
# Usage: relay-postfix.sh DIR PORT PEERS_ENV PASSWORD_FILE
# Stop: kill "$(head -1 DIR/spool/pid/master.pid)".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../e2e/lib/common.sh
source "$here/../../e2e/lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=../../e2e/mailserver/render.sh
source "$here/../../e2e/mailserver/render.sh"

dir="$1" port="$2" env="$3" pwfile="$4"
load_peers_env "$env"
rm -rf "$dir"; mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"; chmod 755 "$dir"

# shellcheck disable=SC2034 # read by name in render_template
{
  POSTFIX_QUEUE="$dir/spool"
  POSTFIX_DATA="$dir/data"
  MAIL_HOSTNAME=relay.bench.local
  POSTFIX_INTERFACES=127.0.0.1
  POSTFIX_MYNETWORKS=127.0.0.0/8
  POSTFIX_LOG="$dir/postfix.log"
  POSTFIX_LOG_PREFIXES="$dir"
  RELAY_LISTEN="127.0.0.1:$port"
  RELAY_HOST="$PEERS_HOST"
  RELAY_PORT="$PEERS_SMTP_STARTTLS_PORT"
  RELAY_CA="$PEERS_CA_PEM"
}
render_postfix_relay "$dir"
printf '[%s]:%s %s:%s\n' "$PEERS_HOST" "$PEERS_SMTP_STARTTLS_PORT" "$PEERS_USER" "$(cat "$pwfile")" >"$dir/sasl_passwd"
chmod 600 "$dir/sasl_passwd"
prepare_postfix_queue "$dir/spool" "$dir/data"
touch -d '-1 min' "$dir/main.cf" "$dir/master.cf" "$dir/sasl_passwd"
/usr/sbin/postfix -c "$dir" start
wait_for_port "$port" 5 || { echo "relay postfix did not listen on $port" >&2; exit 1; }
