#!/usr/bin/env bash
# Runs a command with the real test peers up: start.sh DIR, then the command with
# MAILCRED_PEERS_ENV=DIR/env in its environment (the variable the ignored integration tests
# read), then stop.sh DIR whatever happened. Exits with the command's status.
#
# Usage: e2e/peers/with-peers.sh DIR -- COMMAND [ARGS...]
#   e.g. e2e/peers/with-peers.sh .e2e-run/peers -- cargo test -p mailcred-smtp -- --include-ignored
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$here/../lib/common.sh"

[[ $# -ge 3 && "$2" == "--" ]] || die "usage: $0 DIR -- COMMAND [ARGS...]"
dir="$1"
shift 2

"$here/start.sh" "$dir"
trap '"$here/stop.sh" "$dir" || true' EXIT
export MAILCRED_PEERS_ENV
MAILCRED_PEERS_ENV="$(cd "$dir" && pwd)/env"

rc=0
"$@" || rc=$?
exit "$rc"
