#!/usr/bin/env bash
# Starts dovecot and postfix in the foreground for the kind e2e suite, configured from the
# templates in e2e/mailserver like the local test peers (e2e/peers/start.sh), but listening on
# the pod's address on the standard ports (submission 587, submissions 465, IMAP 143/993).
# Inputs (mounted by e2e/kind/manifests/servers.yaml; env overrides for a local try-out):
#   $TLS_DIR/tls.crt, tls.key   server certificate (SAN: the Service's DNS names); TLS_DIR=/tls
#   $USERS_FILE                 lines "address:password" (a test Secret of the mail-test
#                               namespace); USERS_FILE=/users/users
# Mail to an existing @example.test user lands in /var/mail/vhosts/<user>/Maildir; every other
# domain goes to sink@example.test, so nothing leaves the cluster.
# In the image this file is /opt/mailcred-e2e/kind/mailserver/entrypoint.sh, beside copies of
# e2e/lib and e2e/mailserver (e2e/kind/mailserver/Dockerfile), the same layout as the repository.
set -euo pipefail

e2e="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../lib/common.sh
# shellcheck source=../../lib/common.sh
source "$e2e/lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=../../mailserver/render.sh
# shellcheck source=../../mailserver/render.sh
source "$e2e/mailserver/render.sh"

tls_dir="${TLS_DIR:-/tls}"
users_in="${USERS_FILE:-/users/users}"
state=/var/mail/vhosts
conf="${MAILSERVER_CONF_DIR:-/etc/mailcred-test}"
mkdir -p "$conf" "$state" /run/dovecot
chown 5000:5000 "$state"
chmod 755 "$state"
cp "$tls_dir/tls.crt" "$conf/server.pem"
cp "$tls_dir/tls.key" "$conf/server.key"
chmod 600 "$conf/server.key"

grep -q '^sink@example.test:' "$users_in" || die "$users_in must define sink@example.test"
write_mail_users "$conf/users" /etc/postfix/vmailbox "$state" <"$users_in"

# Debian's own directories (/run/dovecot, /var/spool/postfix, /var/lib/postfix); logs to the
# container's output.
# shellcheck disable=SC2034 # read by name in render_template
{
  DOVECOT_INSTANCE=dovecot
  DOVECOT_RUN=/run/dovecot
  DOVECOT_STATE=/var/lib/dovecot
  MAIL_HOSTNAME=mail.example.test
  LISTEN_ADDRESS='*'
  DOVECOT_LOG=/dev/stderr
  TLS_CERT="$conf/server.pem"
  TLS_KEY="$conf/server.key"
  USERS_FILE="$conf/users"
  IMAP_STARTTLS_PORT=143
  IMAP_TLS_PORT=993
  # Under postfix's queue, where postfix names them private/dovecot-lmtp and private/auth.
  DOVECOT_LMTP_LISTENER=/var/spool/postfix/private/dovecot-lmtp
  DOVECOT_AUTH_LISTENER=/var/spool/postfix/private/auth
}
render_dovecot_conf /etc/dovecot/dovecot.conf

# shellcheck disable=SC2034 # read by name in render_template
{
  POSTFIX_QUEUE=/var/spool/postfix
  POSTFIX_DATA=/var/lib/postfix
  POSTFIX_INTERFACES=all
  # Loopback and kind's default pod network: the application pods' connections.
  POSTFIX_MYNETWORKS="127.0.0.0/8 10.244.0.0/16"
  POSTFIX_LOG=/dev/stdout
  POSTFIX_LOG_PREFIXES="/var, /dev/stdout"
  SUBMISSION_LISTEN=submission
  SUBMISSIONS_LISTEN=submissions
  LMTP_SOCKET=private/dovecot-lmtp
  SASL_SOCKET=private/auth
  SINK_USER=sink@example.test
}
chown postfix:postfix /var/lib/postfix
render_postfix_submission /etc/postfix

dovecot -F &
# postfix's master becomes PID 1's process: SIGTERM from the kubelet stops it.
exec postfix start-fg
