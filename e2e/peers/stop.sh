#!/usr/bin/env bash
# Stops the peers that start.sh started in DIR: postfix (master.pid), dovecot (master.pid),
# moto (moto.pid) and the OAuth node server (oauth.pid). SIGTERM first, SIGKILL to whatever
# is left after a bounded wait.
# Idempotent: a DIR with nothing running is fine. Leaves DIR's files (logs) in place.
#
# Usage: e2e/peers/stop.sh DIR        (env: PEERS_STOP_TIMEOUT seconds, default 10)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$here/../lib/common.sh"

[[ $# -eq 1 ]] || die "usage: $0 DIR"
[[ -d "$1" ]] || { log "$1 does not exist; nothing to stop"; exit 0; }
dir="$(cd "$1" && pwd)"
timeout_s="${PEERS_STOP_TIMEOUT:-10}"

# Every live process that belongs to the daemon whose main process is PID: its whole session
# when it leads one (postfix master, dovecot and moto all run in a session of their own),
# else PID and its descendants, so we never touch the caller's own session.
daemon_pids() {
  local pid="$1" sid p ppid rest
  pid_alive "$pid" || return 0
  sid="$(pid_session "$pid")"
  if [[ "$sid" == "$pid" ]]; then
    session_pids "$sid"
    return 0
  fi
  printf '%s\n' "$pid"
  for p in /proc/[0-9]*; do
    { read -r rest <"$p/stat"; } 2>/dev/null || continue
    rest="${rest##*) }"
    read -r _ ppid _ <<<"$rest"
    [[ "$ppid" == "$pid" ]] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}

read_pid() { # FILE -> pid or empty
  [[ -f "$1" ]] || return 0
  tr -d ' \n' <"$1"
}

declare -A pid_files=(
  [postfix]="$dir/postfix/spool/pid/master.pid"
  [dovecot]="$dir/dovecot/run/master.pid"
  [moto]="$dir/moto.pid"
  [oauth]="$dir/oauth.pid"
)

targets=()
for name in postfix dovecot moto oauth; do
  pid="$(read_pid "${pid_files[$name]}")"
  [[ -n "$pid" ]] || continue
  if ! pid_alive "$pid"; then
    rm -f "${pid_files[$name]}"
    continue
  fi
  # A pid file can outlive its daemon and the number be reused: check what it is.
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  case "$name" in
    postfix) [[ "$cmd" == *master* ]] ;;
    dovecot) [[ "$cmd" == *dovecot* ]] ;;
    moto) [[ "$cmd" == *moto_server* ]] ;;
    oauth) [[ "$cmd" == *node*server.mjs* ]] ;;
  esac || { log "pid $pid in ${pid_files[$name]} is not $name ($cmd); skipped"; continue; }
  mapfile -t members < <(daemon_pids "$pid")
  targets+=("${members[@]}")
  # The main process first, then the rest at once: dovecot's master alone takes ~1.1 s to
  # wind its children down, all together ~30 ms; the peers keep no state worth a clean exit.
  kill -TERM "$pid" 2>/dev/null || true
  for member in "${members[@]}"; do
    [[ "$member" == "$pid" ]] || kill -TERM "$member" 2>/dev/null || true
  done
  log "sent SIGTERM to $name (pid $pid and ${#members[@]} processes of it)"
done

if [[ ${#targets[@]} -eq 0 ]]; then
  log "nothing running in $dir"
  exit 0
fi

alive_targets() {
  local p
  for p in "${targets[@]}"; do pid_alive "$p" && printf '%s ' "$p"; done
  return 0
}

deadline=$(( $(now_ms) + timeout_s * 1000 ))
while [[ -n "$(alive_targets)" ]] && (( $(now_ms) < deadline )); do
  sleep 0.05
done

left="$(alive_targets)"
if [[ -n "$left" ]]; then
  log "still running after ${timeout_s}s, sending SIGKILL: $left"
  # shellcheck disable=SC2086 # a list of pids
  kill -KILL $left 2>/dev/null || true
  deadline=$(( $(now_ms) + 5000 ))
  while [[ -n "$(alive_targets)" ]] && (( $(now_ms) < deadline )); do sleep 0.05; done
  left="$(alive_targets)"
  [[ -z "$left" ]] || die "could not stop: $left"
fi

rm -f "${pid_files[@]}"
log "stopped (postfix, dovecot, moto, oauth) in $dir"
