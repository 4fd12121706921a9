#!/usr/bin/env bash
# Registers one mailbox into the pod's account set through the sidecar's registration API,
# as the crm app does when a customer connects their mailbox. Run inside the app container:
#   printf '%s' "$PASSWORD" | examples/account-set/register.sh NAME USERNAME IMAP_HOST [LIFETIME_SECONDS]
# The password is read from stdin (never argv or env) and sent once, to the loopback API only;
# the sidecar checks the login upstream (422 with the server's reason and nothing stored when
# it fails), seals it with an encrypt-only key and creates the MailCredential. The app keeps
# no copy. Answers 201 with the account's name; exit status 1 on any other answer.
set -euo pipefail
name="$1" username="$2" imap_host="$3" lifetime="${4:-}"
: "${MAILCRED_REGISTRATION_URL:?not set: is the pod annotated mailcred.io/account-set?}"
: "${MAILCRED_APP_TOKEN_FILE:?not set: is the pod annotated mailcred.io/account-set?}"
IFS= read -r password
body="$(NAME="$name" USERNAME="$username" HOST="$imap_host" LIFETIME="$lifetime" PASSWORD="$password" python3 -c '
import json, os
b = {"name": os.environ["NAME"], "username": os.environ["USERNAME"],
     "imap": {"host": os.environ["HOST"], "port": 993, "tls": "implicit"},
     "password": os.environ["PASSWORD"]}
if os.environ["LIFETIME"]:
    b["lifetimeSeconds"] = int(os.environ["LIFETIME"])
print(json.dumps(b))')"
unset password
# The token goes in a header read from a file (curl -H @file), so it is not in argv either.
headers="$(mktemp)"
trap 'rm -f "$headers"' EXIT
printf 'Authorization: Bearer %s\n' "$(cat "$MAILCRED_APP_TOKEN_FILE")" >"$headers"
status="$(printf '%s' "$body" | curl -sS -o /dev/stderr -w '%{http_code}' -X POST \
  -H @"$headers" -H 'Content-Type: application/json' --data-binary @- \
  "$MAILCRED_REGISTRATION_URL/v1/accounts")"
echo
[[ "$status" == 201 ]] || { echo "register.sh: registration answered $status" >&2; exit 1; }
