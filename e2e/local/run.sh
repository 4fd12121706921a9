#!/usr/bin/env bash
# Local end-to-end suite: real postfix + dovecot + moto on loopback, kubectl-mailcred seal,
# mailcred-sidecar --credential-file, real clients as the application. Usage: run.sh [WORKDIR]
# (default: a new temp dir). Needs e2e/peers/install.sh to have run (root).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
work="${1:-$(mktemp -d /tmp/mce.XXXXXX)}"
mkdir -p "$work"
cargo build -q --locked -p kubectl-mailcred -p mailcred-sidecar
exec "$repo/.venv/bin/python" "$repo/e2e/local/run.py" "$work" "${@:2}"
