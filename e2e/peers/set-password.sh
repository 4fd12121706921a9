#!/usr/bin/env bash
# Sets a new password for USER of the peers in DIR, for rotation tests. The password is read
# from stdin (one line; never argv, so it does not show in ps), hashed, and written to
# dovecot's passwd-file, which both IMAP LOGIN and postfix SMTP AUTH (dovecot SASL) use.
# It takes effect for every login that starts after this script returns: start.sh turns
# dovecot's auth cache off; the file's mtime is moved forward by at least a second because
# dovecot re-reads a passwd-file only when its mtime (whole seconds) or size changed, and
# every SHA512-CRYPT line has one size; and the script returns only once the clock has passed
# into the next second (dovecot checks the file at most once a second), so it takes 0-1 s.
# DIR/env is not changed: it keeps the passwords start.sh made.
#
# Usage: printf '%s\n' "$new" | e2e/peers/set-password.sh DIR USER
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$here/../lib/common.sh"

[[ $# -eq 2 ]] || die "usage: printf '%s\\n' NEW_PASSWORD | $0 DIR USER"
dir="$1"
user="$2"
users_file="$dir/dovecot/users"
[[ -f "$users_file" ]] || die "$users_file missing: are the peers started in $dir?"

password=""
IFS= read -r password || [[ -n "$password" ]] || die "no password on stdin"
[[ -n "$password" ]] || die "empty password on stdin"

entry="$(printf '%s\n' "$password" | hash_password)"
unset password

exec 9>"$users_file.lock"
flock -w 10 9 || die "could not lock $users_file"

grep -q "^$(printf '%s' "$user" | sed 's/[][\.*^$/]/\\&/g'):" "$users_file" \
  || die "no user $user in $users_file"

old_mtime="$(stat -c %Y "$users_file")"
tmp="$users_file.tmp"
awk -F: -v OFS=: -v user="$user" -v entry="$entry" \
  '$1 == user { $2 = entry } { print }' "$users_file" >"$tmp"
chmod 644 "$tmp"
now="$(date +%s)"
new_mtime=$(( now > old_mtime ? now : old_mtime + 1 ))
touch -d "@$new_mtime" "$tmp"
mv -f "$tmp" "$users_file"
# Dovecot stats a passwd-file at most once per second of its event loop's clock: a login in
# the same second as this write, before or after it, may still be checked against the old
# copy. Waiting for the next whole second makes every later login see the new file.
next_second=$(( $(date +%s) + 1 ))
while (( $(date +%s) < next_second )); do sleep 0.02; done
log "password of $user changed"
