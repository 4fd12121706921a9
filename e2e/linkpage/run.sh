#!/usr/bin/env bash
# Registration page in a real browser (docs/link-sealing.md): kubectl-mailcred request ->
# link -> Chromium (Playwright) seals in the page -> mailcred-linkpage stores it -> the real
# sidecar sends mail through the real postfix. Usage: run.sh [WORKDIR] [--shots DIR]
# Needs e2e/peers/install.sh (chromium, node, playwright-core via npm ci). Uses the peers named
# by MAILCRED_PEERS_ENV, or starts its own.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
work="${1:-$(mktemp -d /tmp/mcl.XXXXXX)}"
mkdir -p "$work"
chmod 755 "$work"
[[ -d e2e/linkpage/node_modules/playwright-core ]] || (cd e2e/linkpage && npm ci --no-audit --no-fund --ignore-scripts --silent)
cargo build -q --locked -p kubectl-mailcred -p mailcred-sidecar -p mailcred-linkpage
exec "$repo/.venv/bin/python" "$repo/e2e/linkpage/run.py" "$work" "${@:2}"
