# Shared helpers for the e2e/peers scripts; sourced, not run.
# shellcheck shell=bash

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

now_ms() { date +%s%3N; }

# True when something listens on TCP PORT. ss looks without connecting, which keeps the
# daemons' logs free of probe connections ("lost connection after CONNECT"); without ss,
# fall back to a connect to 127.0.0.1.
port_answers() {
  if command -v ss >/dev/null; then
    [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

port_is_free() { ! port_answers "$1"; }

# Prints a free port in 10000-20000 that is not among the arguments.
free_port() {
  local tries port
  for ((tries = 0; tries < 200; tries++)); do
    port=$((10000 + RANDOM % 10000))
    [[ " $* " == *" $port "* ]] && continue
    if port_is_free "$port"; then
      printf '%s' "$port"
      return 0
    fi
  done
  return 1
}

# True while PID exists and is not a zombie: a daemon reparented to a PID 1 that does not
# reap stays in /proc as state Z, and kill -0 still succeeds on it.
pid_alive() {
  local pid="$1" stat state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
  # Field 3, after the parenthesised command name (which may itself contain spaces).
  state="${stat##*) }"
  state="${state%% *}"
  [[ "$state" != "Z" && "$state" != "X" ]]
}

# Session id of PID (field 6 of /proc/PID/stat), empty when gone.
pid_session() {
  local stat rest
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
  rest="${stat##*) }"
  # rest: state ppid pgrp session ...
  read -r _ _ _ sid _ <<<"$rest"
  printf '%s' "$sid"
}

# Live (non-zombie) processes whose session id is SID.
session_pids() {
  local sid="$1" p rest s state
  for p in /proc/[0-9]*; do
    { read -r rest <"$p/stat"; } 2>/dev/null || continue
    rest="${rest##*) }"
    read -r state _ _ s _ <<<"$rest"
    [[ "$s" == "$sid" && "$state" != "Z" && "$state" != "X" ]] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}

random_password() { openssl rand -hex 16; }

# Reads one password line on stdin, prints a dovecot "{SHA512-CRYPT}$6$..." entry. doveadm
# (not `openssl passwd`, which silently truncates passwords past 256 bytes) reads the password
# twice from a non-tty stdin: "enter" and "retype".
hash_password() {
  local password
  IFS= read -r password || [[ -n "$password" ]] || return 1
  printf '%s\n%s\n' "$password" "$password" | doveadm pw -s SHA512-CRYPT
}
