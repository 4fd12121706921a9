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
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$work/tls/ca.key" -out "$work/tls/ca.pem" -days 1 -subj "/CN=mailserver selftest CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$work/tls/tls.key" -out "$work/tls/tls.csr" -subj "/CN=mail" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "extendedKeyUsage=serverAuth" \
    "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$work/tls/ext"
  openssl x509 -req -in "$work/tls/tls.csr" -CA "$work/tls/ca.pem" -CAkey "$work/tls/ca.key" \
    -CAcreateserial -days 1 -extfile "$work/tls/ext" -out "$work/tls/tls.crt" 2>/dev/null
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

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 100); do
  if listening 587 && listening 465 && listening 143 && listening 993; then break; fi
  sleep 0.1
done

passed=0
failed=0
result() {
  if [[ "$1" -eq 0 ]]; then
    passed=$((passed + 1))
    echo "PASS $2"
  else
    failed=$((failed + 1))
    echo "FAIL $2"
    tail -n 20 "$work/server.log" | sed 's/^/    /'
  fi
}

for port in 587 465 143 993; do
  status=0
  listening "$port" || status=1
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

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
