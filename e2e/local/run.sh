#!/usr/bin/env bash
# Local end-to-end suite: real postfix + dovecot + moto on loopback, kubectl-mailcred seal,
# mailcred-sidecar --credential-file, real clients as the application (run.py); then the
# fake API server's store mode checked with curl (apiserver_check.py) and account sets end to
# end: registration API, per-connection account selection, delete, expiry (accounts.py).
# Usage: run.sh [WORKDIR] [run.py options] (default: a new temp dir). Needs
# e2e/peers/install.sh to have run (root).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
work="${1:-$(mktemp -d /tmp/mce.XXXXXX)}"
mkdir -p "$work"
cargo build -q --locked -p kubectl-mailcred -p mailcred-sidecar
py="$repo/.venv/bin/python"
"$py" "$repo/e2e/local/run.py" "$work" "${@:2}"
mkdir -p "$work/apiserver" "$work/accounts"
"$py" "$repo/e2e/local/apiserver_check.py" "$work/apiserver"
exec "$py" "$repo/e2e/local/accounts.py" "$work/accounts"
