#!/usr/bin/env bash
# IMAP benchmark. Two modes, one dovecot (e2e/peers), one raw-socket client:
#
# Default (issue 15 item 4): the proxy (app plaintext on loopback -> proxy -> TLS -> dovecot)
# against an app doing IMAPS to dovecot directly. Full-body FETCH of 1,000 x 50 KiB and FLAGS
# round trips, each at 1 and at 8 clients, BENCH_ROUNDS (default 3) interleaved rounds,
# medians; the proxy's CPU (utime + stime from /proc) per MB moved from the same runs. Prints
# the table with the goals and writes the JSON to BENCH_OUT (default
# bench/imap/body-latest.json).
#
# BENCH_PATHS=all (issue 4): five paths, one client:
#   (a) through the mailcred IMAP proxy (app plaintext on loopback -> proxy -> TLS -> dovecot)
#   (b) direct to dovecot over TLS (what an application does without mailcred)
#   (b') direct to dovecot in plaintext on loopback
#   (c) nginx's mail proxy (plaintext to dovecot's plaintext port: nginx cannot do TLS upstream)
#   (c') the proxy with a plaintext upstream (insecure: true), like for like with (c)
# Workloads: FETCH 1:1000 BODY.PEEK[] of 50 KiB messages; 10,000 FLAGS-only FETCHes one at a
# time. Then RSS of the proxy with 100 concurrent sessions. Prints ratios
# (BENCH_ROUNDS interleaved rounds, default 5, best round per path).
# Numbers go to bench/README-imap.md.
#
# Usage: bench/imap/run.sh PEERS_ENV_FILE     (peers from e2e/peers/start.sh; for
#        BENCH_PATHS=all nginx + libnginx-mod-mail or nginx-light installed; builds the
#        proxy in release)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
env_file="${1:?usage: run.sh PEERS_ENV_FILE}"
# shellcheck source-path=SCRIPTDIR source=../../e2e/lib/common.sh
source "$repo/e2e/lib/common.sh"
load_peers_env "$env_file"
work="$(mktemp -d /tmp/mailcred-bench-imap.XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ "${BENCH_KEEP:-0}" != 1 ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT

wait_port() { wait_for_port "$1" 10 || { echo "port $1 not up" >&2; return 1; }; }

user="$PEERS_SINK_USER"; pass="$PEERS_SINK_PASSWORD"; mailbox=Bench; count=1000
maildir="$PEERS_MAILDIR_ROOT/$user/Maildir/.$mailbox"
if [ "$(ls "$maildir/cur" "$maildir/new" 2>/dev/null | grep -c test || true)" -lt "$count" ]; then
  rm -rf "$maildir"
  python3 - "$maildir" "$count" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for sub in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n"
for i in range(n):
    head = b"From: bench@example.test\r\nSubject: bench %d\r\n\r\n" % i
    body = (line * (51200 // len(line) + 1))[: 51200 - len(head)]
    with open(os.path.join(d, "cur", "%d.bench%d.test:2,S" % (1700000000 + i, i)), "wb") as f:
        f.write(head + body)
PY
  chown -R 5000:5000 "$PEERS_MAILDIR_ROOT/$user"
fi

echo "building the proxy (release)..." >&2
(cd "$repo" && cargo build --release -q -p mailcred-imap --example serve_peers)
proxy_port=$(free_port)
MAILCRED_PEERS_ENV="$env_file" "$repo/target/release/examples/serve_peers" "$proxy_port" implicit PEERS_SINK_USER 2>"$work/proxy.log" &
pids+=($!); echo $! > "$work/proxy.pid"; proxy_pid=$!
wait_port "$proxy_port"
if [[ "${BENCH_PATHS:-body}" != all ]]; then
  rounds="${BENCH_ROUNDS:-3}"
  out="${BENCH_OUT:-$here/body-latest.json}"
  echo "measuring ($rounds interleaved rounds, medians)..." >&2
  targets=$(python3 -c 'import json,sys; a=sys.argv[1:]; print(json.dumps([
    {"name": "proxy (TLS upstream)", "port": int(a[0]), "user": "x", "pass": "x", "pid": int(a[5])},
    {"name": "direct TLS", "port": int(a[1]), "user": a[2], "pass": a[3], "ca": a[4]}]))' \
    "$proxy_port" "$PEERS_IMAP_TLS_PORT" "$user" "$pass" "$PEERS_CA_PEM" "$proxy_pid")
  # BENCH_BASELINE_BIN=path/to/an/older/serve_peers: measured in the same rounds, so a change
  # to the proxy is judged against its previous build under the same load.
  if [[ -n "${BENCH_BASELINE_BIN:-}" ]]; then
    base_port=$(free_port)
    MAILCRED_PEERS_ENV="$env_file" "$BENCH_BASELINE_BIN" "$base_port" implicit PEERS_SINK_USER 2>"$work/proxy-base.log" &
    pids+=($!); base_pid=$!
    wait_port "$base_port"
    targets=$(python3 -c 'import json,sys; t=json.loads(sys.argv[1]); t.append({"name": "proxy baseline", "port": int(sys.argv[2]), "user": "x", "pass": "x", "pid": int(sys.argv[3])}); print(json.dumps(t))' "$targets" "$base_port" "$base_pid")
  fi
  python3 "$here/body.py" "$rounds" "$count" "$mailbox" "$targets" "${BENCH_FLAGS:-5000}" > "$work/body.json"
  python3 "$here/table.py" "$work/body.json" "$(cut -d" " -f1-3 /proc/loadavg)" "$(git -C "$repo" rev-parse --short HEAD)" "$out"
  exit 0
fi
# The same proxy with a plaintext upstream (insecure: true), like for like with nginx.
plain_port=$(free_port)
MAILCRED_PEERS_ENV="$env_file" "$repo/target/release/examples/serve_peers" "$plain_port" none PEERS_SINK_USER 2>"$work/proxy-plain.log" &
pids+=($!); plain_pid=$!
wait_port "$plain_port"

nginx_port=$(free_port); auth_port=$(free_port "$nginx_port")
module=/usr/lib/nginx/modules/ngx_mail_module.so
cat > "$work/nginx.conf" <<NGX
daemon off;
master_process off;  # one process doing the work, so its CPU time can be read
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
load_module $module;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$auth_port;
    # The "tiny local script": every login goes to dovecot's plaintext port on loopback.
    location /auth { add_header Auth-Status OK; add_header Auth-Server 127.0.0.1; add_header Auth-Port $PEERS_IMAP_STARTTLS_PORT; return 204; }
  }
}
mail {
  server_name localhost;
  auth_http 127.0.0.1:$auth_port/auth;
  server { listen 127.0.0.1:$nginx_port; protocol imap; }
}
NGX
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!); nginx_pid=$!
wait_port "$nginx_port"

rounds="${BENCH_ROUNDS:-5}"
echo "measuring ($rounds interleaved rounds, best per path)..." >&2
targets=$(python3 -c 'import json,sys; a=sys.argv[1:]; print(json.dumps([
  {"name": "proxy (TLS upstream)", "port": int(a[0]), "user": "x", "pass": "x", "pid": int(a[8])},
  {"name": "direct TLS", "port": int(a[1]), "user": a[5], "pass": a[6], "ca": a[7]},
  {"name": "direct plaintext", "port": int(a[2]), "user": a[5], "pass": a[6]},
  {"name": "nginx mail proxy (plaintext upstream)", "port": int(a[3]), "user": a[5], "pass": a[6], "pid": int(a[9])},
  {"name": "proxy (plaintext upstream)", "port": int(a[4]), "user": "x", "pass": "x", "pid": int(a[10])}]))' \
  "$proxy_port" "$PEERS_IMAP_TLS_PORT" "$PEERS_IMAP_STARTTLS_PORT" "$nginx_port" "$plain_port" "$user" "$pass" "$PEERS_CA_PEM" "$proxy_pid" "$nginx_pid" "$plain_pid")
results=$(python3 "$here/client.py" compare "$rounds" "$count" "$mailbox" "$targets")
rss=$(python3 "$here/client.py" hold 127.0.0.1 "$proxy_port" x x "$mailbox" 100 "$work/proxy.pid")

echo "load average: $(cut -d" " -f1-3 /proc/loadavg) (2 cores)"
python3 - "$results" "$rss" <<'PY'
import json, sys
runs = json.loads(sys.argv[1])
names = [r["name"] for r in runs]
rss = json.loads(sys.argv[2])
mib = runs[0]["bodies_bytes"] / 2**20
print("| path | FETCH 1000 x 50 KiB BODY.PEEK[] | MiB/s | 10,000 FLAGS FETCHes | FETCH/s | FLAGS round trip median / p99 |")
print("|---|---|---|---|---|---|")
for n, r in zip(names, runs):
    print("| %s | %.3f s | %.0f | %.3f s | %.0f | %.0f / %.0f us |" % (n, r["bodies_s"], mib / r["bodies_s"], r["flags_s"], 10000 / r["flags_s"], r["flags_median_us"], r["flags_p99_us"]))
def ratio(a, b):
    return "bodies %.2fx, flags %.2fx (by median round trip %.2fx)" % (
        runs[b]["bodies_s"] / runs[a]["bodies_s"], runs[b]["flags_s"] / runs[a]["flags_s"],
        runs[b]["flags_median_us"] / runs[a]["flags_median_us"])
print("throughput ratios (higher is better for the first):")
print("  proxy (TLS upstream) / direct TLS:            " + ratio(0, 1))
print("  proxy (TLS upstream) / direct plaintext:      " + ratio(0, 2))
print("  proxy (TLS upstream) / nginx (plaintext):     " + ratio(0, 3))
print("  proxy (plaintext upstream) / nginx:           " + ratio(4, 3))
print("  proxy (plaintext upstream) / direct plaintext: " + ratio(4, 2))
for r in runs:
    if "middle_cpu_s_per_run" in r:
        print("CPU of the middle process per run (1000 bodies + 10,000 FLAGS): %-40s %.3f s" % (r["name"], r["middle_cpu_s_per_run"]))
print("proxy RSS: %d KiB idle, %d KiB with %d sessions (peak %d KiB)" % (rss["rss_before_kib"], rss["rss_with_sessions_kib"], rss["sessions"], rss["hwm_kib"]))
PY
