#!/usr/bin/env bash
# SMTP benchmark of the issue, all in one run against the same postfix + dovecot:
#   (a) app -> mailcred-sidecar (loopback, no AUTH) -> pooled STARTTLS+AUTH upstream
#   (b) app -> upstream directly, new STARTTLS + AUTH connection per message
#   (c) app -> local Postfix relay (smtp_sasl_password_maps) -> upstream
#   (d) upstream's own per-message latency: one STARTTLS+AUTH connection per client, reused
# N messages (default 2000) of 10 KiB from C (default 8) concurrent clients, timed until every
# message is in the recipient's maildir; client-seen p50/p99; sidecar RSS idle and with 100
# connections in the middle of DATA.
#
# Usage (root; e2e/peers/install.sh done): bench/smtp/run.sh
# Env: N, C, MAILCRED_PEERS_ENV (use running peers; otherwise started here), PEERS_SCRIPTS
# (default <repo>/e2e/peers), SIDECAR_BIN (default target/release/mailcred-sidecar, built if
# missing), KEEP=1 keeps the work dir. SIDECAR_BIN_B: a second sidecar build (e.g. with
# `--features bench-plain-allocator`) measured on paths (a) and (e) in the same run, interleaved
# with the first, to compare builds as a ratio.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
N="${N:-2000}"; C="${C:-8}"
scripts="${PEERS_SCRIPTS:-$repo/e2e/peers}"
# shellcheck source-path=SCRIPTDIR source=../../e2e/lib/common.sh
source "$repo/e2e/lib/common.sh"
work="$(mktemp -d /tmp/mcbench.XXXXXX)"; chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -f "$work/relay/spool/pid/master.pid" ]]; then
    kill "$(head -1 "$work/relay/spool/pid/master.pid" | tr -d ' ')" 2>/dev/null || true
  fi
  if [[ -z "${MAILCRED_PEERS_ENV:-}" && -f "$work/peers/env" ]]; then "$scripts/stop.sh" "$work/peers" >/dev/null || true; fi
  [[ "${KEEP:-}" == 1 ]] || rm -rf "$work"
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

start_sidecar() { # BIN LOG -> sets started_pid, started_port
  "$1" --credential-file "$work/cred.json" --local-key-file "$work/key" --no-aws \
    --smtp-listen 127.0.0.1:0 --imap-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --upstream-pool-size "$C" \
    --max-connections 512 >"$2" 2>&1 &
  started_pid=$!; pids+=("$started_pid")
  for _ in $(seq 200); do grep -q 'mailcred sidecar serving' "$2" && break; sleep 0.05; done
  started_port="$(grep -o '"smtp":"127.0.0.1:[0-9]*"' "$2" | head -1 | grep -o '[0-9]*"$' | tr -d '"')"
}
start_sidecar "$bin" "$work/sidecar.log"
sidecar=$started_pid; port=$started_port
port_b=""
if [[ -n "${SIDECAR_BIN_B:-}" ]]; then
  start_sidecar "$SIDECAR_BIN_B" "$work/sidecar-b.log"
  port_b=$started_port
fi
rss() { awk '/VmRSS/{print $2}' "/proc/$sidecar/status"; }
rss_start=$(rss)

relay_port="$(free_port "$port")"
"$here/relay-postfix.sh" "$work/relay" "$relay_port" "$env_file" "$work/pw" >&2

maildir="$PEERS_MAILDIR_ROOT/$PEERS_USER2/Maildir"
common=(--sender "$PEERS_USER" --rcpt "$PEERS_USER2" --maildir "$maildir" --ca "$PEERS_CA_PEM"
        --user "$PEERS_USER" --password-file "$work/pw" --tls-host "$PEERS_HOST")
load() {
  local out
  out=$(python3 "$here/load.py" "${common[@]}" --delivery-timeout 120 "$@")
  if ! python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["failed"]==0 and r["delivered"]==r["sent"] else 1)' "$out"; then
    echo "load run failed or not all delivered: $out" >&2; return 1
  fi
  printf '%s\n' "$out"
}

# Warm-up (decrypt, pools, postfix processes), not measured.
load --mode plain --port "$port" -n 40 -c "$C" --label warm-sidecar >/dev/null
load --mode direct --port "$PEERS_SMTP_STARTTLS_PORT" -n 40 -c "$C" --label warm-direct >/dev/null
load --mode plain --port "$relay_port" -n 40 -c "$C" --label warm-relay >/dev/null
[[ -z "$port_b" ]] || load --mode plain --port "$port_b" -n 40 -c "$C" --label warm-sidecar-b >/dev/null
rss_idle=$(rss)

a=$(load --mode plain --port "$port" -n "$N" -c "$C" --label sidecar)
ab='""'; eb='""'
[[ -z "$port_b" ]] || ab=$(load --mode plain --port "$port_b" -n "$N" -c "$C" --label sidecar-b)
b=$(load --mode direct --port "$PEERS_SMTP_STARTTLS_PORT" -n "$N" -c "$C" --label direct)
c=$(load --mode plain --port "$relay_port" -n "$N" -c "$C" --label relay)
d=$(load --mode pooled --port "$PEERS_SMTP_STARTTLS_PORT" -n "$N" -c "$C" --label pooled)
e=$(load --mode plain-pooled --port "$port" -n "$N" -c "$C" --label sidecar-reused)
[[ -z "$port_b" ]] || eb=$(load --mode plain-pooled --port "$port_b" -n "$N" -c "$C" --label sidecar-b-reused)
rss_after=$(rss)

# 100 connections held in the middle of DATA.
coproc HOLD { python3 "$here/hold.py" "$port" 100 "$PEERS_USER" "$PEERS_USER2"; }
read -r ready <&"${HOLD[0]}"
rss_100=$(rss)
echo go >&"${HOLD[1]}"
read -r held_ok <&"${HOLD[0]}"
rss_100_after=$(rss)

python3 - "$a" "$b" "$c" "$d" "$e" "$rss_start" "$rss_idle" "$rss_after" "$rss_100" "$rss_100_after" "$held_ok" "$N" "$C" "$ab" "$eb" <<'PY'
import json, sys
a, b, c, d, e = (json.loads(x) for x in sys.argv[1:6])
rs, ri, ra, r100, r100a = (int(x) / 1024 for x in sys.argv[6:11])
held_ok, n, conc = sys.argv[11], sys.argv[12], sys.argv[13]
print(f"N={n} messages of 10 KiB, {conc} concurrent clients, to delivery in the maildir\n")
print("| path | msgs/s | p50 ms | p99 ms | failed |")
print("|---|---|---|---|---|")
for name, r in [("(a) sidecar", a), ("(b) direct, TLS+AUTH per message", b), ("(c) Postfix relay", c), ("(d) upstream, pooled TLS+AUTH", d), ("(e) sidecar, app connection reused", e)]:
    print(f"| {name} | {r['msgs_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['failed']} |")
print()
print(f"sidecar / direct throughput: {a['msgs_per_s'] / b['msgs_per_s']:.2f}x (target >= 1.0x)")
print(f"sidecar / Postfix relay throughput: {a['msgs_per_s'] / c['msgs_per_s']:.2f}x (target >= 1.5x)")
print(f"added latency, sidecar (app connection reused) - upstream pooled: p50 {e['p50_ms'] - d['p50_ms']:.2f} ms, p99 {e['p99_ms'] - d['p99_ms']:.2f} ms (target p99 <= 2 ms)")
print(f"  (a) opens a new app connection per message: p50 {a['p50_ms'] - d['p50_ms']:.2f} ms, p99 {a['p99_ms'] - d['p99_ms']:.2f} ms over (d)")
print(f"sidecar RSS: {rs:.1f} MiB at start, {ri:.1f} MiB idle after warm-up (target <= 6), {ra:.1f} MiB after the runs, "
      f"{r100:.1f} MiB with 100 connections mid-DATA (target <= 24), {r100a:.1f} MiB after they finished ({held_ok}/100 got 250)")
ab, eb = json.loads(sys.argv[14]), json.loads(sys.argv[15])
if ab:
    print(f"\nsecond build (SIDECAR_BIN_B), same run: (a) {ab['msgs_per_s']} msgs/s p50 {ab['p50_ms']} p99 {ab['p99_ms']}; "
          f"(e) {eb['msgs_per_s']} msgs/s p50 {eb['p50_ms']} p99 {eb['p99_ms']}")
    print(f"first / second build throughput: (a) {a['msgs_per_s'] / ab['msgs_per_s']:.3f}x, (e) {e['msgs_per_s'] / eb['msgs_per_s']:.3f}x")
print(json.dumps({"sidecar": a, "direct": b, "relay": c, "pooled": d, "sidecar_reused": e,
                  "sidecar_b": ab or None, "sidecar_b_reused": eb or None}), file=sys.stderr)
PY
