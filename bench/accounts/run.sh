#!/usr/bin/env bash
# Account-set benchmark (issue 13): 10,000 outlines, 1,000 cached plaintexts, KMS Decrypt count
# under 200 concurrent sessions, registration -> first send, throughput vs single-credential
# mode. Real peers (postfix, dovecot with 1,000 bulk users, moto), the fake API server's store
# mode. Usage: bench/accounts/run.sh [WORKDIR] [--json FILE] [--sidecar BIN] [--outlines N]
# Needs e2e/peers/install.sh to have run (root). Builds the debug binaries it uses unless
# --sidecar names another build (the kubectl-mailcred plugin is always the debug build).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
work="${1:-$(mktemp -d /tmp/mcb.XXXXXX)}"
mkdir -p "$work"
cargo build -q --locked -p kubectl-mailcred -p mailcred-sidecar
export AWS_EC2_METADATA_DISABLED=true
exec "$repo/.venv/bin/python" "$repo/bench/accounts/accounts.py" "$work" "${@:2}"
