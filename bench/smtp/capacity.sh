#!/usr/bin/env bash
# SMTP through the sidecar against the upstream's own capacity (issue #15 item 5), in one run:
# pooled direct (C authenticated STARTTLS connections straight to postfix, each reused) is the
# baseline; each sidecar build is measured with a new app connection per message and with the
# app's connection reused, interleaved, REPS repetitions, medians; once with postfix delivering
# by LMTP into dovecot and once with postfix discarding (a quicker upstream). bench/smtp/capacity.py
# does the runs and prints the tables.
#
# Usage (root; e2e/peers/install.sh done): bench/smtp/capacity.sh
# Env: N (2000), C (8), REPS (3), UPSTREAMS (lmtp,discard), OUT (bench/smtp/capacity-DATE.json),
# MAILCRED_PEERS_ENV (use running peers: their postfix's virtual_transport is switched to
# discard: for the quick upstream and back afterwards; otherwise peers are started here),
# SIDECAR_BIN (default target/release/mailcred-sidecar, built if missing), SIDECAR_BIN_B and
# LABEL_A/LABEL_B (a second build, e.g. the commit before a change, measured in the same run).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
N="${N:-2000}"; C="${C:-8}"; REPS="${REPS:-3}"; UPSTREAMS="${UPSTREAMS:-lmtp,discard}"
OUT="${OUT:-$here/capacity-$(date +%F).json}"
scripts="${PEERS_SCRIPTS:-$repo/e2e/peers}"
# shellcheck source-path=SCRIPTDIR source=../../e2e/lib/common.sh
source "$repo/e2e/lib/common.sh"
work="$(mktemp -d /tmp/mccap.XXXXXX)"; chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -z "${MAILCRED_PEERS_ENV:-}" && -f "$work/peers/env" ]]; then "$scripts/stop.sh" "$work/peers" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [[ -z "${MAILCRED_PEERS_ENV:-}" ]]; then
  "$scripts/start.sh" "$work/peers" >&2
  env_file="$work/peers/env"
else
  env_file="$MAILCRED_PEERS_ENV"
fi
load_peers_env "$env_file"

bin="${SIDECAR_BIN:-$repo/target/release/mailcred-sidecar}"
if [[ ! -x "$bin" ]]; then (cd "$repo" && cargo build --release -p mailcred-sidecar >&2); fi
seal() { (cd "$repo" && cargo run -q -p mailcred-sidecar --example seal_local -- "$@"); }
printf '%s\n' "$PEERS_PASSWORD" >"$work/pw"; chmod 600 "$work/pw"
seal keygen "$work/key"
seal "$work/key" "$PEERS_HOST" "$PEERS_SMTP_STARTTLS_PORT" starttls "$PEERS_CA_PEM" "$PEERS_USER" <"$work/pw" >"$work/cred.json"

sidecars=()
start_sidecar() { # LABEL BIN
  local log="$work/sidecar-$1.log" pid port
  "$2" --credential-file "$work/cred.json" --local-key-file "$work/key" --no-aws \
    --smtp-listen 127.0.0.1:0 --imap-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --upstream-pool-size "$C" \
    --max-connections 512 >"$log" 2>&1 &
  pid=$!; pids+=("$pid")
  for _ in $(seq 200); do grep -q 'mailcred sidecar serving' "$log" && break; sleep 0.05; done
  port="$(grep -o '"smtp":"127.0.0.1:[0-9]*"' "$log" | head -1 | grep -o '[0-9]*"$' | tr -d '"')"
  [[ -n "$port" ]] || die "sidecar $1 did not start: $(tail -3 "$log")"
  sidecars+=(--sidecar "$1:$port:$pid")
}
start_sidecar "${LABEL_A:-sidecar}" "$bin"
[[ -z "${SIDECAR_BIN_B:-}" ]] || start_sidecar "${LABEL_B:-sidecar-b}" "$SIDECAR_BIN_B"

python3 "$here/capacity.py" "${sidecars[@]}" --direct-port "$PEERS_SMTP_STARTTLS_PORT" \
  --postfix-config "$PEERS_POSTFIX_CONFIG" --upstreams "$UPSTREAMS" --reps "$REPS" -n "$N" -c "$C" --out "$OUT" \
  --sender "$PEERS_USER" --rcpt "$PEERS_USER2" --maildir "$PEERS_MAILDIR_ROOT/$PEERS_USER2/Maildir" \
  --ca "$PEERS_CA_PEM" --user "$PEERS_USER" --password-file "$work/pw" --tls-host "$PEERS_HOST"
echo "JSON: $OUT" >&2
