# Renders the mail server configuration in this folder for every script that needs one: the
# local test peers (e2e/peers/start.sh), the kind suite's in-cluster server
# (e2e/kind/mailserver/entrypoint.sh) and the benchmark's postfix relay
# (bench/smtp/relay-postfix.sh). Sourced after e2e/lib/common.sh (render_template, die).
# Each function reads the upper-case variables its templates name; an unset one is an error.
# shellcheck shell=bash

mailserver_templates="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Reads "address:password" lines on stdin; writes dovecot's passwd-file USERS_FILE (uid/gid
# 5000, SHA512-CRYPT, home MAIL_ROOT/address) and postfix's VMAILBOX map of the same users.
write_mail_users() {
  local users_file="$1" vmailbox="$2" mail_root="$3" user password i
  local -a users=() passwords=() hashes=()
  while IFS=: read -r user password; do
    [[ -n "$user" ]] || continue
    users+=("$user")
    passwords+=("$password")
  done
  # One openssl run hashes every line it reads (a fork per user fewer on the start path).
  mapfile -t hashes < <(printf '%s\n' "${passwords[@]}" | openssl passwd -6 -stdin)
  [[ ${#hashes[@]} -eq ${#users[@]} ]] || die "password hashing failed"
  for i in "${!users[@]}"; do
    printf '%s:{SHA512-CRYPT}%s:5000:5000::%s::\n' "${users[$i]}" "${hashes[$i]}" "$mail_root/${users[$i]}"
  done >"$users_file"
  chmod 644 "$users_file"
  printf '%s OK\n' "${users[@]}" >"$vmailbox"
}

# dovecot.conf for IMAP + LMTP + SASL. Variables: DOVECOT_INSTANCE DOVECOT_RUN DOVECOT_STATE
# MAIL_HOSTNAME LISTEN_ADDRESS DOVECOT_LOG TLS_CERT TLS_KEY USERS_FILE IMAP_STARTTLS_PORT
# IMAP_TLS_PORT DOVECOT_LMTP_LISTENER DOVECOT_AUTH_LISTENER. Optional: DOVECOT_OAUTH2_ARGS, the
# path of a dovecot-oauth2.conf.ext; when set, XOAUTH2 and OAUTHBEARER are offered and checked
# by an oauth2 passdb with that file (token introspection, e2e/peers/oauth.sh).
render_dovecot_conf() {
  # shellcheck disable=SC2034 # read by name in render_template
  local DOVECOT_DH_SETTING="" DOVECOT_AUTH_MECHANISMS="plain login" DOVECOT_OAUTH2_PASSDB=""
  if [[ -n "${DOVECOT_OAUTH2_ARGS:-}" ]]; then
    # shellcheck disable=SC2034
    DOVECOT_AUTH_MECHANISMS="plain login xoauth2 oauthbearer"
    # shellcheck disable=SC2034
    DOVECOT_OAUTH2_PASSDB="passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $DOVECOT_OAUTH2_ARGS
}"
  fi
  if [[ -f /usr/share/dovecot/dh.pem ]]; then
    # shellcheck disable=SC2034
    DOVECOT_DH_SETTING="ssl_dh = </usr/share/dovecot/dh.pem"
  fi
  render_template "$mailserver_templates/dovecot.conf.in" "$1"
}

# main.cf from the common part and the ROLE's part, master.cf from the ROLE's listeners and
# postfix's own services. Variables: those of postfix-main-common.cf.in, and the role's.
_render_postfix() { # CONFIG_DIR ROLE
  # shellcheck disable=SC2034 # POSTFIX_CONFIG: read by name in render_template
  local dir="$1" role="$2" t="$mailserver_templates" POSTFIX_CONFIG="$1"
  render_template "$t/postfix-main-common.cf.in" "$dir/main.cf.common"
  render_template "$t/postfix-main-$role.cf.in" "$dir/main.cf.role"
  cat "$dir/main.cf.common" "$dir/main.cf.role" >"$dir/main.cf"
  render_template "$t/postfix-master-$role.cf.in" "$dir/master.cf.role"
  cat "$dir/master.cf.role" "$t/postfix-master-services.cf" >"$dir/master.cf"
  rm -f "$dir/main.cf.common" "$dir/main.cf.role" "$dir/master.cf.role"
}

# The submission server (TLS + AUTH via dovecot SASL, LMTP delivery, the sink catch-all).
# Also: SUBMISSION_LISTEN SUBMISSIONS_LISTEN LMTP_SOCKET SASL_SOCKET TLS_CERT TLS_KEY SINK_USER.
render_postfix_submission() {
  _render_postfix "$1" submission
  render_template "$mailserver_templates/virtual_alias.in" "$1/virtual_alias"
}

# The benchmark's relay. Also: RELAY_LISTEN RELAY_HOST RELAY_PORT RELAY_CA.
render_postfix_relay() {
  _render_postfix "$1" relay
}

# Queue directories of a private postfix instance (ownership as postfix-files has it) plus the
# quick-start marker: "postfix start" then skips its 0.5-2 s integrity scan.
prepare_postfix_queue() { # QUEUE DATA_DIR
  local queue="$1" data="$2" q
  local -a owned=("$data")
  for q in active bounce corrupt defer deferred flush hold incoming saved trace private; do
    owned+=("$queue/$q")
  done
  mkdir -m 755 "$queue" "$queue/pid"
  mkdir -m 700 "${owned[@]}" "$queue/maildrop" "$queue/public"
  chown postfix:root "${owned[@]}"
  chown postfix:postdrop "$queue/maildrop" "$queue/public"
  chmod 1730 "$queue/maildrop"
  chmod 2710 "$queue/public"
  touch "$queue/quick-start"
}
