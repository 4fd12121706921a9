#!/usr/bin/env bash
# One-command demo on the embedded default (local key provider; no cloud account, no cluster).
# Narrates: what is sealed, what is stored, that it opens only for the resource it was sealed for;
# then the live flow: real postfix + dovecot on loopback, the sidecar, an "app" that sends and
# reads mail with no password, what the policy refuses and where the mail landed.
# As root on Debian/Ubuntu it installs postfix, dovecot, swaks, curl and a Python venv if missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
command -v cargo >/dev/null || { echo "cargo not found: install Rust >= 1.94 with rustup" >&2; exit 1; }

say "Building kubectl-mailcred and mailcred-sidecar (the first build takes a few minutes)..."
cargo build -q -p kubectl-mailcred -p mailcred-sidecar
plugin=target/debug/kubectl-mailcred

work=$(mktemp -d /tmp/mcd.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

say "1. A key for the local provider (stands in for a cloud KMS key):"
"$plugin" keygen -o "$work/local.key"

say "2. Sealing the mailbox password of billing@example.test for shop/billing."
# The demo's password comes from the random generator, through stdin: never argv, never env.
password_file="$work/password"
(umask 077; head -c 18 /dev/urandom | base64 > "$password_file")
"$plugin" seal --name billing --namespace shop --username billing@example.test \
  --smtp smtp.example.test:587 --imap imap.example.test:993 \
  --service-account billing-api --allowed-sender '*@example.test' --messages-per-minute 30 \
  --kms "local:$work/local.key" --password-stdin -w "$work/billing.yaml" < "$password_file"
echo "   This is all that is stored in Kubernetes:"
sed 's/^/   | /' "$work/billing.yaml"
if grep -qF -- "$(cat "$password_file")" "$work/billing.yaml"; then
  echo "FAIL: the password is in the YAML" >&2; exit 1
fi
echo "   (the password appears nowhere in it)"

say "3. It opens for the resource it was sealed for (the password itself is never printed):"
"$plugin" verify -f "$work/billing.yaml" --local-key-file "$work/local.key"

say "4. Someone with edit rights points SMTP at their own server:"
sed 's/smtp.example.test/smtp.attacker.example/' "$work/billing.yaml" > "$work/edited.yaml"
if "$plugin" verify -f "$work/edited.yaml" --local-key-file "$work/local.key"; then
  echo "FAIL: an edited credential opened" >&2; exit 1
fi

say "5. Someone copies it into their own namespace:"
sed 's/namespace: shop/namespace: attacker/' "$work/billing.yaml" > "$work/copied.yaml"
if "$plugin" verify -f "$work/copied.yaml" --local-key-file "$work/local.key"; then
  echo "FAIL: a copied credential opened" >&2; exit 1
fi

say "Now the live flow. Installing the local mail servers if missing (apt, PyPI)..."
e2e/peers/install.sh >/dev/null
.venv/bin/python e2e/local/run.py "$work/live" --demo

say "6. The mailbox owner seals instead, by link: kubectl mailcred request -> one-time link ->
   a real (headless) Chromium opens it and seals in the page -> the sidecar sends mail with it."
e2e/linkpage/run.sh "$work/linkpage" --shots "$work/linkpage-shots" | grep -E '^(PASS|FAIL) (request|browser: (page: shows|submit)|replay|sidecar|the message)|^linkpage e2e'
echo "   screenshots of every page state: $work/linkpage-shots (kept until the demo exits)"

say "Done: sealed once, stored as ciphertext, usable only as sealed; the app sent and read mail without ever seeing the password."
