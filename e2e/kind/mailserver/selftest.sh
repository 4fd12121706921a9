#!/usr/bin/env bash
# Proves the kind suite's in-cluster mail server configuration without Docker: runs
# entrypoint.sh in private mount + network namespaces (so it touches neither the host's
# postfix/dovecot configuration nor any host port) and drives it with real clients:
# SMTP submission with STARTTLS + AUTH (swaks), delivery, IMAP STARTTLS + LOGIN (python imaplib),
# an unauthenticated MAIL refused, a wrong password refused.
#
# Needs root and what e2e/peers/install.sh installs (postfix, dovecot, swaks, openssl, python3).
# Usage: e2e/kind/mailserver/selftest.sh      Last line: "N passed, M failed".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../lib/common.sh
# shellcheck source=../../lib/common.sh
source "$here/../../lib/common.sh"
if [[ "${1:-}" != --inside ]]; then
  [[ "$(id -u)" -eq 0 ]] || { echo "selftest.sh: run as root" >&2; exit 1; }
  work="$(mktemp -d /tmp/mcms.XXXXXX)"
  chmod 755 "$work"
  [[ "${SELFTEST_KEEP:-0}" == 1 ]] || trap 'rm -rf "$work"' EXIT
  # Private copies of everything entrypoint.sh writes.
  mkdir -p "$work"/{etc-postfix,etc-dovecot,spool,varlib-postfix,mail,run-dovecot,tls,conf}
  cp -a /etc/postfix/. "$work/etc-postfix/"
  cp -a /etc/dovecot/. "$work/etc-dovecot/"
  cp -a /var/spool/postfix/. "$work/spool/"
  cp -a /var/lib/postfix/. "$work/varlib-postfix/"
  chown postfix:postfix "$work/varlib-postfix"
  rm -f "$work/spool/pid/"*.pid
  make_test_pki "$work/tls" "mailserver selftest CA" mail "DNS:localhost,IP:127.0.0.1" 1
  # The names of a Kubernetes TLS Secret's keys, as the pod mounts them.
  mv "$work/tls/server.pem" "$work/tls/tls.crt"
  mv "$work/tls/server.key" "$work/tls/tls.key"
  password="$(openssl rand -hex 16)"
  printf 'app@example.test:%s\nsink@example.test:%s\n' "$password" "$(openssl rand -hex 16)" >"$work/users"
  chmod 600 "$work/users"
  status=0
  unshare --mount --net --fork -- bash ${SELFTEST_TRACE:+-x} "$0" --inside "$work" || status=$?
  exit "$status"
fi

work="$2"
password="$(sed -n 's/^app@example.test://p' "$work/users")"
mount --make-rprivate /
ip link set lo up
mount --bind "$work/etc-postfix" /etc/postfix
mount --bind "$work/etc-dovecot" /etc/dovecot
mount --bind "$work/spool" /var/spool/postfix
mount --bind "$work/varlib-postfix" /var/lib/postfix
mount --bind "$work/mail" /var/mail
mkdir -p /run/dovecot
mount --bind "$work/run-dovecot" /run/dovecot

TLS_DIR="$work/tls" USERS_FILE="$work/users" MAILSERVER_CONF_DIR="$work/conf" \
  "$here/entrypoint.sh" >"$work/server.log" 2>&1 &
server=$!
cleanup() {
  postfix stop >/dev/null 2>&1 || true
  doveadm stop >/dev/null 2>&1 || true
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap cleanup EXIT

for port in 587 465 143 993; do wait_for_port "$port" 10 || true; done

# Records one check by the exit status of what ran before it; a failure shows the server's log.
result() { # STATUS NAME
  if [[ "$1" -eq 0 ]]; then
    pass "$2"
  else
    fail "$2"
    tail -n 20 "$work/server.log" | sed 's/^/    /'
  fi
}

for port in 587 465 143 993; do
  status=0
  port_answers "$port" || status=1
  result "$status" "listens on $port"
done

token="selftest-$(openssl rand -hex 6)"
printf '%s\n' "$password" >"$work/pw"
set +e
swaks --server 127.0.0.1 --port 587 --tls --tls-ca-path "$work/tls/ca.pem" --tls-verify \
  --auth PLAIN --auth-user app@example.test --auth-password "$(cat "$work/pw")" \
  --from app@example.test --to app@example.test --header "Subject: $token" \
  --body "kind e2e mail server selftest" >"$work/swaks.log" 2>&1
result $? "submission 587: STARTTLS (verified against the test CA), AUTH, message accepted"

swaks --server 127.0.0.1 --port 465 --tls-on-connect --tls-ca-path "$work/tls/ca.pem" --tls-verify \
  --from app@example.test --to app@example.test >"$work/swaks-noauth.log" 2>&1
grep -q '^<~\* 5[0-9][0-9] ' "$work/swaks-noauth.log"
result $? "submissions 465: implicit TLS; RCPT without AUTH refused with 5xx"

swaks --server 127.0.0.1 --port 587 --tls --tls-ca-path "$work/tls/ca.pem" \
  --auth PLAIN --auth-user app@example.test --auth-password wrong-password \
  --from app@example.test --to app@example.test >"$work/swaks-badpw.log" 2>&1
grep -q '^<~\* 535 ' "$work/swaks-badpw.log"
result $? "a wrong password is refused (535)"

PW_FILE="$work/pw" CA="$work/tls/ca.pem" TOKEN="$token" python3 - <<'EOF'
import imaplib, os, ssl, sys, time
ctx = ssl.create_default_context(cafile=os.environ["CA"])
password = open(os.environ["PW_FILE"]).read().strip()
deadline = time.monotonic() + 20
while True:
    imap = imaplib.IMAP4("127.0.0.1", 143, timeout=10)
    imap.starttls(ssl_context=ctx)
    imap.login("app@example.test", password)
    imap.select("INBOX", readonly=True)
    typ, data = imap.search(None, "SUBJECT", os.environ["TOKEN"])
    imap.logout()
    if data and data[0].split():
        sys.exit(0)
    if time.monotonic() > deadline:
        print("message not delivered within 20 s", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.3)
EOF
result $? "IMAP 143: STARTTLS, LOGIN, the message arrived in INBOX"
set -e

checks_summary
