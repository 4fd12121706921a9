#!/usr/bin/env bash
# Fault-injection end-to-end suite: the real sidecar against real postfix + dovecot + moto on
# loopback, with chaos proxies between them (KMS slow / too slow / HTTP 500, SMTP reset mid-DATA,
# IMAP reset mid-literal, expired upstream certificate, re-seal and deletion mid-session).
# Usage: run.sh [WORKDIR] [--only s1,s4] [--strict] (default WORKDIR: a new temp dir).
# Needs e2e/peers/install.sh to have run (root). About a minute; see e2e/faults/README.md.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
if [[ $# -gt 0 && "$1" != -* ]]; then
  work="$1"
  shift
else
  work="$(mktemp -d /tmp/mcf.XXXXXX)"
fi
mkdir -p "$work"
chmod 755 "$work"  # postfix and dovecot run as their own users
cargo build -q --locked -p kubectl-mailcred -p mailcred-sidecar
exec "$repo/.venv/bin/python" "$repo/e2e/faults/run.py" "$work" "$@"
