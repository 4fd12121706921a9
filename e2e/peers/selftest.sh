#!/usr/bin/env bash
# Proves the real test peers work, with real clients: starts them in a temp dir, sends mail
# with swaks over both SMTP ports (TLS verified against the test CA, AUTH), reads it back with
# python imaplib over both IMAP ports, checks refusals (wrong password, no AUTH, unknown
# recipient, untrusted CA), KMS data keys with EncryptionContext against moto, password
# rotation with set-password.sh, and what the logs say. Stops the peers at the end.
# Prints PASS/FAIL per check and a last line "N passed, M failed"; exits 1 on any failure.
#
# Usage: e2e/peers/selftest.sh        (env: PEERS_SELFTEST_KEEP=1 keeps the temp dir)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${PEERS_VENV:-$repo/.venv}"
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$here/../lib/common.sh"

"$here/install.sh"

# One check by a selftest.py client (IMAP with imaplib, KMS with boto3): PASS when it exits 0,
# FAIL otherwise; the one line it prints goes into the check's text either way.
client_check() { # NAME SUBCOMMAND [ARGS...]
  local name="$1" out
  shift
  if out="$("$venv/bin/python" "$here/selftest.py" "$@" 2>&1)"; then
    pass "$name ($out)"
  else
    fail "$name" "$out"
  fi
}

run_dir="$(mktemp -d /tmp/mailcred-peers.XXXXXX)"
stopped=0
finish() {
  local rc=$?
  if [[ $stopped -eq 0 ]]; then "$here/stop.sh" "$run_dir" >/dev/null 2>&1 || true; fi
  if [[ $checks_failed -gt 0 || $rc -ne 0 || -n "${PEERS_SELFTEST_KEEP:-}" ]]; then
    log "kept $run_dir for its logs"
  else
    rm -rf "$run_dir"
  fi
}
trap finish EXIT

t0=$(now_ms)
if "$here/start.sh" "$run_dir"; then
  pass "start.sh brought up postfix, dovecot, moto and the OAuth server in $(( $(now_ms) - t0 )) ms"
else
  fail "start.sh" "peers did not start"
  checks_summary || exit 1
fi

load_peers_env "$run_dir/env"

# ---- env file ------------------------------------------------------------------------------
missing=()
for key in PEERS_DIR PEERS_HOST PEERS_CA_PEM PEERS_SMTP_STARTTLS_PORT PEERS_SMTP_TLS_PORT \
  PEERS_IMAP_STARTTLS_PORT PEERS_IMAP_TLS_PORT PEERS_KMS_ENDPOINT PEERS_USER PEERS_PASSWORD \
  PEERS_USER2 PEERS_PASSWORD2 PEERS_POSTFIX_LOG PEERS_DOVECOT_LOG PEERS_MAILDIR_ROOT \
  PEERS_SINK_USER PEERS_MOTO_LOG PEERS_BULK_USERS PEERS_BULK_USERS_FILE AWS_ENDPOINT_URL AWS_REGION AWS_ACCESS_KEY_ID \
  AWS_SECRET_ACCESS_KEY PEERS_OAUTH_ISSUER PEERS_OAUTH_TOKEN_ENDPOINT PEERS_OAUTH_DEVICE_ENDPOINT \
  PEERS_OAUTH_AUTHORIZATION_ENDPOINT PEERS_OAUTH_INTROSPECTION_ENDPOINT \
  PEERS_OAUTH_REVOCATION_ENDPOINT PEERS_OAUTH_SCOPE PEERS_OAUTH_CLIENT_ID PEERS_OAUTH_CLIENT_SECRET \
  PEERS_OAUTH_ROTATE_CLIENT_ID PEERS_OAUTH_JWT_CLIENT_ID PEERS_OAUTH_JWT_KEY_PEM PEERS_OAUTH_JWT_KEY_ID \
  PEERS_OAUTH_NATIVE_CLIENT_ID PEERS_OAUTH_NATIVE_REDIRECT_URI PEERS_OAUTH_SHORT_CLIENT_ID \
  PEERS_OAUTH_ACCESS_TOKEN_TTL PEERS_OAUTH_SHORT_TTL PEERS_OAUTH_LOGIN_PASSWORD PEERS_OAUTH_TOKEN_LOG \
  PEERS_OAUTH_LOG PEERS_GOOGLE_TOKEN_ENDPOINT PEERS_GOOGLE_REVOKE_ENDPOINT PEERS_GOOGLE_SA_KEY_FILE \
  PEERS_GOOGLE_SA_EMAIL PEERS_GOOGLE_SCOPE PEERS_DOVECOT_OAUTH2_CONFIG; do
  grep -q "^$key=." "$run_dir/env" || missing+=("$key")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  pass "env file has every documented key"
else
  fail "env file" "missing ${missing[*]}"
fi

# ---- TLS certificates ----------------------------------------------------------------------
for pair in "smtp-starttls:$PEERS_SMTP_STARTTLS_PORT:-starttls smtp" \
  "smtp-tls:$PEERS_SMTP_TLS_PORT:" \
  "imap-starttls:$PEERS_IMAP_STARTTLS_PORT:-starttls imap" \
  "imap-tls:$PEERS_IMAP_TLS_PORT:"; do
  IFS=: read -r name port starttls <<<"$pair"
  # shellcheck disable=SC2086 # starttls is two words or none
  out="$(openssl s_client -connect "127.0.0.1:$port" -servername localhost $starttls \
    -CAfile "$PEERS_CA_PEM" -verify_return_error -verify_hostname localhost </dev/null 2>&1)" || true
  if grep -q 'Verify return code: 0 (ok)' <<<"$out"; then
    pass "$name certificate verifies against PEERS_CA_PEM for host localhost"
  else
    fail "$name certificate" "$(grep -m1 -E 'Verify return code|error' <<<"$out" || echo 'no handshake')"
  fi
done
client_check "IMAP TLS refused by a client that does not trust the test CA" imap-untrusted-ca

# ---- SMTP submission -----------------------------------------------------------------------
run_id="$(date +%s)-$$"
tok_starttls="selftest-starttls-$run_id"
tok_tls="selftest-tls-$run_id"

# SMTP PORT MODE USER PASSWORD SUBJECT RCPT... : swaks with the test CA and host check. The
# password goes through swaks' environment option, not argv.
swaks_send() {
  local port="$1" mode="$2" user="$3" password="$4" subject="$5"
  shift 5
  local rcpts
  rcpts="$(IFS=,; printf '%s' "$*")"
  local -a tls_args=(--tls-verify --tls-ca-path "$PEERS_CA_PEM")
  case "$mode" in
    starttls) tls_args+=(--tls) ;;
    tls) tls_args+=(--tls-on-connect) ;;
    plain) tls_args=() ;;
  esac
  local -a auth_args=()
  if [[ -n "$user" ]]; then auth_args=(--auth PLAIN --auth-user "$user"); fi
  local -a pw_env=()
  if [[ -n "$password" ]]; then pw_env=("SWAKS_OPT_auth_password=$password"); fi
  env "${pw_env[@]}" swaks --server "$PEERS_HOST" --port "$port" \
    --from "$PEERS_USER" --to "$rcpts" --header "Subject: $subject" \
    --timeout 15 "${tls_args[@]}" "${auth_args[@]}" 2>&1
}

send_check() { # NAME PORT MODE SUBJECT RCPT...
  local name="$1" port="$2" mode="$3" subject="$4" out
  shift 4
  if out="$(swaks_send "$port" "$mode" "$PEERS_USER" "$PEERS_PASSWORD" "$subject" "$@")" \
    && grep -q '^<~  235 ' <<<"$out" && grep -q '^<~  250 2.0.0 Ok: queued' <<<"$out" \
    && ! grep -qE '^<[~*]\*' <<<"$out"; then
    pass "$name: swaks AUTH PLAIN accepted, every recipient taken and queued for $*"
  else
    fail "$name" "$(grep -E '^(<~\*|\*\*\*)' <<<"$out" | head -3 | tr '\n' ' ')"
  fi
}
send_check "SMTP STARTTLS :$PEERS_SMTP_STARTTLS_PORT" "$PEERS_SMTP_STARTTLS_PORT" starttls \
  "$tok_starttls" "$PEERS_USER" "$PEERS_USER2" someone@elsewhere.example
send_check "SMTP implicit TLS :$PEERS_SMTP_TLS_PORT" "$PEERS_SMTP_TLS_PORT" tls \
  "$tok_tls" "$PEERS_USER" "$PEERS_USER2" someone@elsewhere.example

refuse_check() { # NAME EXPECTED-REGEX swaks_send-args...
  local name="$1" expect="$2" out rc=0
  shift 2
  out="$(swaks_send "$@")" || rc=$?
  if [[ $rc -ne 0 ]] && grep -qE "$expect" <<<"$out" && ! grep -q '250 2.0.0 Ok: queued' <<<"$out"; then
    pass "$name (swaks exit $rc, $(grep -m1 -oE "$expect.*" <<<"$out"))"
  else
    fail "$name" "swaks exit $rc; $(grep -E '^(<~|\*\*\*)' <<<"$out" | tail -3 | tr '\n' ' ')"
  fi
}
refuse_check "SMTP AUTH with a wrong password refused (STARTTLS)" '535 5\.7\.8' \
  "$PEERS_SMTP_STARTTLS_PORT" starttls "$PEERS_USER" "wrong-$PEERS_PASSWORD" refused-1 "$PEERS_USER"
refuse_check "SMTP AUTH with a wrong password refused (implicit TLS)" '535 5\.7\.8' \
  "$PEERS_SMTP_TLS_PORT" tls "$PEERS_USER" "wrong-$PEERS_PASSWORD" refused-2 "$PEERS_USER"
refuse_check "SMTP without AUTH may not send" '<[~*]\* +554 5\.7\.1 ' \
  "$PEERS_SMTP_STARTTLS_PORT" starttls "" "" refused-3 "$PEERS_USER"
refuse_check "SMTP without TLS is refused before MAIL" '<[~*]\* +530 5\.7\.0 ' \
  "$PEERS_SMTP_STARTTLS_PORT" plain "" "" refused-4 "$PEERS_USER"
refuse_check "SMTP to an unknown @example.test recipient refused" '<[~*]\* +550 5\.1\.1 ' \
  "$PEERS_SMTP_STARTTLS_PORT" starttls "$PEERS_USER" "$PEERS_PASSWORD" refused-5 "$PEERS_UNKNOWN_RCPT"

# ---- IMAP read back ------------------------------------------------------------------------
imap_wait() { # NAME MODE USER PASSWORD TOKEN...
  local name="$1" mode="$2" user="$3" password="$4"
  shift 4
  SELFTEST_PASSWORD="$password" client_check "$name" imap-wait "$mode" "$user" "$@"
}
imap_wait "IMAP TLS :$PEERS_IMAP_TLS_PORT reads both messages of $PEERS_USER" tls \
  "$PEERS_USER" "$PEERS_PASSWORD" "$tok_starttls" "$tok_tls"
imap_wait "IMAP STARTTLS :$PEERS_IMAP_STARTTLS_PORT reads both messages of $PEERS_USER2" starttls \
  "$PEERS_USER2" "$PEERS_PASSWORD2" "$tok_starttls" "$tok_tls"
imap_wait "mail to someone@elsewhere.example landed at the sink ($PEERS_SINK_USER, IMAP TLS)" tls \
  "$PEERS_SINK_USER" "$PEERS_SINK_PASSWORD" "$tok_starttls" "$tok_tls"

sink_files="$( (grep -rl -e "$tok_starttls" "$PEERS_MAILDIR_ROOT/$PEERS_SINK_USER/Maildir" 2>/dev/null || true) | wc -l)"
if [[ "$sink_files" -ge 1 ]] && grep -q 'to=<sink@example.test>, orig_to=<someone@elsewhere.example>.*status=sent' "$PEERS_POSTFIX_LOG"; then
  pass "sink maildir holds the foreign mail; postfix log shows orig_to=<someone@elsewhere.example> delivered to the sink"
else
  fail "sink delivery" "files=$sink_files; $(grep -m2 'elsewhere' "$PEERS_POSTFIX_LOG" | tr '\n' ' ')"
fi
if grep -qE 'status=(deferred|bounced)|relay=[^ ]*elsewhere' "$PEERS_POSTFIX_LOG"; then
  fail "nothing leaves the machine" "$(grep -m2 -E 'status=(deferred|bounced)' "$PEERS_POSTFIX_LOG")"
else
  pass "no delivery attempt off the machine (no deferred/bounced/foreign relay in the postfix log)"
fi

imap_login() { # NAME MODE USER PASSWORD ok|fail
  SELFTEST_PASSWORD="$4" client_check "$1" imap-login "$2" "$3" "$5"
}
imap_login "IMAP LOGIN with a wrong password refused (TLS)" tls "$PEERS_USER" "wrong-$PEERS_PASSWORD" fail
imap_login "IMAP LOGIN with a wrong password refused (STARTTLS)" starttls "$PEERS_USER" "x" fail

# ---- bulk users (account-set scale tests) -----------------------------------------------------
if [[ "${PEERS_BULK_USERS:-0}" -gt 0 ]]; then
  client_check "bulk users log in over IMAP" bulk
else
  pass "bulk users skipped (PEERS_BULK_USERS=0)"
fi

# ---- KMS (moto) ----------------------------------------------------------------------------
if out="$("$venv/bin/python" "$here/selftest.py" kms 2>&1)"; then
  pass "KMS at $PEERS_KMS_ENDPOINT: $out"
else
  fail "KMS" "$out"
fi

# ---- OAuth: oidc-provider, the JWT-bearer endpoint, XOAUTH2/OAUTHBEARER at dovecot and postfix
# One python run for all of them (selftest_oauth.py prints PASS/FAIL lines).
t_oauth=$(now_ms)
while IFS=$'\t' read -r verdict name detail; do
  case "$verdict" in
    PASS) pass "$name" ;;
    FAIL) fail "$name" "$detail" ;;
    *) [[ -z "$verdict" ]] || fail "selftest_oauth.py" "$verdict $name $detail" ;;
  esac
done < <("$venv/bin/python" "$here/selftest_oauth.py" "$run_dir/env" 2>&1 || true)
log "OAuth checks took $(( $(now_ms) - t_oauth )) ms"

# ---- load: 150 IMAP + 150 SMTP sessions of one user, logged in at the same moment ----------
# More than postfix's default 100 processes per service and dovecot's default 10 connections
# per user and IP: a proxy's load test must find the peers wide enough.
t_load=$(now_ms)
if out="$("$venv/bin/python" "$here/selftest.py" concurrent 150 150 2>&1)"; then
  pass "$out ($(( $(now_ms) - t_load )) ms)"
else
  fail "concurrent sessions" "$out"
fi

# ---- password rotation ---------------------------------------------------------------------
rot_user="$PEERS_ROTATE_USER"
old_pw="$PEERS_ROTATE_PASSWORD"
# Spaces, quotes, a backslash and 300 bytes: the rotated password must survive stdin,
# hashing, IMAP quoting and SASL PLAIN unchanged.
# 300 bytes: past the 256 where `openssl passwd` would have truncated it.
new_pw="rotated pw \"$(random_password)\" \\ %x $(printf 'L%.0s' {1..265})"
newer_pw="$(random_password)"
imap_login "rotation user logs in with its first password" tls "$rot_user" "$old_pw" ok
if printf '%s\n' "$new_pw" | "$here/set-password.sh" "$run_dir" "$rot_user" 2>/dev/null; then
  pass "set-password.sh took the new password on stdin"
else
  fail "set-password.sh" "exit non-zero"
fi
imap_login "after rotation the old password is refused over IMAP" tls "$rot_user" "$old_pw" fail
imap_login "after rotation the new password works over IMAP" starttls "$rot_user" "$new_pw" ok
refuse_check "after rotation the old password is refused by SMTP AUTH" '535 5\.7\.8' \
  "$PEERS_SMTP_TLS_PORT" tls "$rot_user" "$old_pw" rotated-1 "$PEERS_USER"
if out="$(swaks_send "$PEERS_SMTP_STARTTLS_PORT" starttls "$rot_user" "$new_pw" rotated-2 "$PEERS_USER")" \
  && grep -q '^<~  235 ' <<<"$out"; then
  pass "after rotation the new password works for SMTP AUTH"
else
  fail "SMTP AUTH with the new password" "$(grep -E '^(<~\*|\*\*\*)' <<<"$out" | head -2 | tr '\n' ' ')"
fi
# A second rotation within the same second: dovecot only sees it if the mtime moved.
printf '%s\n' "$newer_pw" | "$here/set-password.sh" "$run_dir" "$rot_user" 2>/dev/null \
  || fail "second set-password.sh" "exit non-zero"
imap_login "an immediate second rotation refuses the previous password" tls "$rot_user" "$new_pw" fail
imap_login "an immediate second rotation accepts the newest password" tls "$rot_user" "$newer_pw" ok
if out="$(printf '%s\n' x | "$here/set-password.sh" "$run_dir" nobody@example.test 2>&1)"; then
  fail "set-password.sh for an unknown user" "succeeded"
else
  pass "set-password.sh refuses an unknown user ($out)"
fi

# ---- logs ----------------------------------------------------------------------------------
if grep -qE 'postfix/submission/smtpd\[[0-9]+\]: (Anonymous|Untrusted|Trusted|Verified)? ?TLS connection established from .*TLSv1\.[23]' "$PEERS_POSTFIX_LOG" \
  && grep -qE 'postfix/submissions/smtpd\[[0-9]+\]: (Anonymous|Untrusted|Trusted|Verified)? ?TLS connection established from .*TLSv1\.[23]' "$PEERS_POSTFIX_LOG"; then
  pass "postfix log shows TLS established on both submission ports"
else
  fail "postfix TLS log lines" "$(grep -m2 'TLS connection' "$PEERS_POSTFIX_LOG" | tr '\n' ' ')"
fi
if grep -q "sasl_method=PLAIN, sasl_username=$PEERS_USER" "$PEERS_POSTFIX_LOG"; then
  pass "postfix log shows sasl_username=$PEERS_USER"
else
  fail "postfix sasl_username" "$(grep -m2 sasl_ "$PEERS_POSTFIX_LOG" | tr '\n' ' ')"
fi
if grep -qE "imap-login: Info: Login: user=<$PEERS_USER>, method=PLAIN, .*, TLS, " "$PEERS_DOVECOT_LOG" \
  && grep -qE "imap-login: Info: Login: user=<$PEERS_USER2>, method=PLAIN, .*, TLS, " "$PEERS_DOVECOT_LOG"; then
  pass "dovecot log shows the TLS logins (implicit TLS and STARTTLS)"
else
  fail "dovecot TLS login lines" "$(grep -m2 'Login:' "$PEERS_DOVECOT_LOG" | tr '\n' ' ')"
fi
if grep -q 'auth failed' "$PEERS_DOVECOT_LOG" || grep -qi 'password mismatch' "$PEERS_DOVECOT_LOG"; then
  pass "dovecot log records the refused logins"
else
  fail "dovecot refused-login lines" "none found"
fi
leaks=0
for pw in "$PEERS_PASSWORD" "$PEERS_PASSWORD2" "$old_pw" "$newer_pw"; do
  if grep -rqF -- "$pw" "$PEERS_POSTFIX_LOG" "$PEERS_DOVECOT_LOG" "$PEERS_MOTO_LOG"; then
    leaks=$((leaks + 1))
  fi
done
if [[ $leaks -eq 0 ]]; then
  pass "no password appears in the postfix, dovecot or moto logs"
else
  fail "password in logs" "$leaks password(s) found"
fi

# ---- stop ----------------------------------------------------------------------------------
t0=$(now_ms)
if "$here/stop.sh" "$run_dir" >/dev/null 2>&1; then
  stopped=1
  stop_ms=$(( $(now_ms) - t0 ))
  still=()
  for port in "$PEERS_SMTP_STARTTLS_PORT" "$PEERS_SMTP_TLS_PORT" "$PEERS_IMAP_STARTTLS_PORT" \
    "$PEERS_IMAP_TLS_PORT" "$PEERS_KMS_PORT" "$PEERS_OAUTH_PORT" "$PEERS_GOOGLE_TOKEN_PORT"; do
    port_answers "$port" && still+=("$port")
  done
  if [[ ${#still[@]} -eq 0 ]]; then
    pass "stop.sh stopped everything in $stop_ms ms; no port listens any more"
  else
    fail "stop.sh" "still listening: ${still[*]}"
  fi
else
  fail "stop.sh" "exit non-zero"
fi

checks_summary
