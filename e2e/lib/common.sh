# Shell helpers shared by the e2e suites, the peers scripts and the benchmarks; sourced, not
# run: source "<repo>/e2e/lib/common.sh".
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

# Waits up to SECONDS (default 10) until something listens on TCP PORT.
wait_for_port() {
  local port="$1" deadline=$(( $(now_ms) + ${2:-10} * 1000 ))
  until port_answers "$port"; do
    (( $(now_ms) < deadline )) || return 1
    sleep 0.05
  done
}

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

# Exports every KEY=value of the peers' env file (e2e/peers/start.sh DIR writes DIR/env).
load_peers_env() {
  [[ -f "$1" ]] || die "$1 missing: start the peers with e2e/peers/start.sh DIR"
  set -a
  # shellcheck disable=SC1090 # written by start.sh at run time
  source "$1"
  set +a
}

# A test CA and a separate server certificate signed by it, in DIR: ca.pem, ca.key,
# server.pem, server.key (rustls/webpki refuse a CA certificate used as a server certificate).
# Usage: make_test_pki DIR CA_NAME SERVER_CN SUBJECT_ALT_NAMES DAYS
#   e.g. make_test_pki "$dir/tls" "test CA" localhost "DNS:localhost,IP:127.0.0.1" 30
make_test_pki() {
  local dir="$1" ca_name="$2" cn="$3" san="$4" days="$5"
  mkdir -p "$dir"
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -days "$days" -subj "/CN=$ca_name" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=$cn" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=$san" >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days "$days" -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
  rm -f "$dir/server.csr" "$dir/ca.srl"
  chmod 600 "$dir/ca.key" "$dir/server.key"
  chmod 644 "$dir/ca.pem" "$dir/server.pem"
}

# Renders TEMPLATE to OUT: every ${NAME} (upper case) becomes the value of the shell variable
# NAME. An unset NAME is an error, so a template never renders half-filled; any other "$"
# (postfix's $myhostname, a regexp's "$/") is left alone. Pure bash: the kind mail server
# image has no envsubst or python.
render_template() {
  local template="$1" out="$2" line name text="" pattern='\$\{([A-Z][A-Z0-9_]*)\}'
  [[ -f "$template" ]] || die "template $template missing"
  while IFS= read -r line || [[ -n "$line" ]]; do
    while [[ "$line" =~ $pattern ]]; do
      name="${BASH_REMATCH[1]}"
      [[ -v "$name" ]] || die "$template: \${$name} is not set"
      line="${line//"\${$name}"/"${!name}"}"
    done
    text+="$line"$'\n'
  done <"$template"
  printf '%s' "$text" >"$out"
}

# ---- PASS/FAIL check recorder: one line per check, a closing line "N passed, M failed" ----
checks_passed=0
checks_failed=0
pass() { checks_passed=$((checks_passed + 1)); printf 'PASS %s\n' "$1"; }
fail() { checks_failed=$((checks_failed + 1)); printf 'FAIL %s%s\n' "$1" "${2:+: $2}"; }
# Prints the closing line; false when a check failed (the script's exit status).
checks_summary() {
  printf '%s passed, %s failed\n' "$checks_passed" "$checks_failed"
  [[ $checks_failed -eq 0 ]]
}

# Copies executable BIN into the root filesystem ROOT as ROOT/DEST, with the shared libraries
# ldd lists for it at the paths the dynamic loader looks them up by (what a FROM scratch image
# needs to run a dynamically linked binary: scripts/images.sh, e2e/pod/run.sh).
install_with_libs() { # BIN ROOT DEST
  local bin="$1" root="$2" dest="$3" lib
  install -D -m 0755 "$bin" "$root$dest"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    [[ -e "$root$lib" ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}
