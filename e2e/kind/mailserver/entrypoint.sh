#!/usr/bin/env bash
# Starts dovecot and postfix in the foreground for the kind e2e suite.
# Inputs (mounted by e2e/kind/manifests/mailserver.yaml; env overrides for a local try-out):
#   $TLS_DIR/tls.crt, tls.key   server certificate (SAN: the Service's DNS names); TLS_DIR=/tls
#   $USERS_FILE                 lines "address:password" (a test Secret of the mail-test
#                               namespace); USERS_FILE=/users/users
# Mail to an existing @example.test user lands in /var/mail/vhosts/<user>/Maildir; every other
# domain goes to sink@example.test, so nothing leaves the cluster.
set -euo pipefail

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

users_file="$conf/users"
: >"$users_file"
domain_users=()
while IFS=: read -r user password; do
  [[ -n "$user" ]] || continue
  hash="$(printf '%s\n' "$password" | openssl passwd -6 -stdin)"
  printf '%s:{SHA512-CRYPT}%s:5000:5000::%s/%s::\n' "$user" "$hash" "$state" "$user" >>"$users_file"
  domain_users+=("$user")
done <"$users_in"
grep -q '^sink@example.test:' "$users_file" || {
  echo "mailserver: $users_in must define sink@example.test" >&2
  exit 1
}
chmod 644 "$users_file"

cat >/etc/dovecot/dovecot.conf <<CONF
protocols = imap lmtp
listen = *
log_path = /dev/stderr
info_log_path = /dev/stderr
auth_verbose = yes
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_max_userip_connections = 1000
ssl = required
ssl_cert = <$conf/server.pem
ssl_key = <$conf/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%u $users_file
}
userdb {
  driver = passwd-file
  args = username_format=%u $users_file
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  inet_listener imap {
    port = 143
  }
  inet_listener imaps {
    port = 993
    ssl = yes
  }
}
service lmtp {
  unix_listener /var/spool/postfix/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
service auth {
  unix_listener /var/spool/postfix/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
protocol lmtp {
  postmaster_address = postmaster@example.test
}
CONF

# Debian's postfix installed with "No configuration" has no main.cf.
touch /etc/postfix/main.cf
chown postfix:postfix /var/lib/postfix
postconf -e \
  "compatibility_level = 3.7" \
  "myhostname = mail.example.test" \
  "mydomain = example.test" \
  "myorigin = example.test" \
  "mydestination =" \
  "inet_interfaces = all" \
  "inet_protocols = ipv4" \
  "alias_maps =" \
  "alias_database =" \
  "local_recipient_maps =" \
  "maillog_file = /dev/stdout" \
  "smtpd_banner = \$myhostname ESMTP mailcred e2e" \
  "message_size_limit = 26214400" \
  "virtual_mailbox_domains = example.test" \
  "virtual_mailbox_maps = texthash:/etc/postfix/vmailbox" \
  "virtual_alias_domains =" \
  "virtual_alias_maps = regexp:/etc/postfix/virtual_alias" \
  "virtual_transport = lmtp:unix:private/dovecot-lmtp" \
  "smtpd_tls_cert_file = $conf/server.pem" \
  "smtpd_tls_key_file = $conf/server.key" \
  "smtpd_tls_security_level = encrypt" \
  "smtpd_tls_auth_only = yes" \
  "smtpd_tls_mandatory_protocols = >=TLSv1.2" \
  "smtpd_sasl_type = dovecot" \
  "smtpd_sasl_path = private/auth" \
  "smtpd_sasl_auth_enable = yes" \
  "smtpd_sasl_security_options = noanonymous" \
  "smtpd_relay_restrictions = permit_sasl_authenticated, reject" \
  "smtpd_recipient_restrictions = permit_sasl_authenticated, reject"
printf '%s OK\n' "${domain_users[@]}" >/etc/postfix/vmailbox
printf '!/@example\\.test$/ sink@example.test\n' >/etc/postfix/virtual_alias
# The whole master.cf: submission (587, STARTTLS) and submissions (465, implicit TLS), no port
# 25, no chroot (Debian's chrooted services would need copies of /etc files).
cat >/etc/postfix/master.cf <<'CONF'
submission inet n - n - - smtpd
  -o syslog_name=postfix/submission
submissions inet n - n - - smtpd
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
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CONF

dovecot -F &
# postfix's master becomes PID 1's process: SIGTERM from the kubelet stops it.
exec postfix start-fg
