#!/usr/bin/env bash
# Installs what the real test peers need (postfix, dovecot, swaks, moto in a venv, and
# oidc-provider from npm into e2e/peers/oauth/node_modules) on a
# Debian/Ubuntu machine, as root, without prompts. Idempotent: when everything is already in
# place it returns in well under a second, so every test entry point can call it.
#
# Usage: e2e/peers/install.sh            (env: PEERS_VENV overrides <repo>/.venv)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${PEERS_VENV:-$repo/.venv}"
requirements="$here/requirements.txt"
# The stamp records which requirements the venv was built from, so a changed pin rebuilds it.
venv_stamp="$venv/.mailcred-peers-requirements"
# The OAuth peers (e2e/peers/oauth): `npm ci` from the committed package-lock.json; the stamp
# records which lock file node_modules was installed from.
oauth_dir="$here/oauth"
npm_stamp="$oauth_dir/node_modules/.mailcred-package-lock.json"

apt_packages=(
  postfix dovecot-imapd dovecot-lmtpd
  swaks libnet-ssleay-perl libio-socket-ssl-perl
  curl openssl ca-certificates python3 python3-venv iproute2
)
# Node.js 20+ and npm come with the machine (a newer nodejs than Debian 12's 18); apt is only
# the fallback when they are missing altogether.
node_packages=(nodejs npm)
# Binaries start.sh and selftest.sh run; a package can be "installed" yet half-removed.
needed_files=(
  /usr/sbin/postfix /usr/sbin/postconf /usr/lib/postfix/sbin/master
  /usr/sbin/dovecot /usr/bin/doveadm /usr/lib/dovecot/imap /usr/lib/dovecot/lmtp
  /usr/bin/swaks /usr/bin/curl /usr/bin/openssl /usr/bin/python3 /usr/bin/ss
)

log() { printf 'install.sh: %s\n' "$*" >&2; }

missing_packages() {
  local pkg status
  for pkg in "${apt_packages[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || printf '%s\n' "$pkg"
  done
}

apt_ready() {
  local f
  [[ -z "$(missing_packages)" ]] || return 1
  for f in "${needed_files[@]}"; do [[ -x "$f" ]] || return 1; done
}

node_ready() {
  [[ -x /usr/bin/node && -x /usr/bin/npm ]] || return 1
  local major
  major="$(/usr/bin/node --version 2>/dev/null || echo v0)"
  major="${major#v}"
  major="${major%%.*}"
  (( major >= 20 )) || { log "node $(/usr/bin/node --version) is too old for oidc-provider 9 (needs 20+)"; return 1; }
}

npm_ready() {
  [[ -f "$oauth_dir/node_modules/oidc-provider/package.json" && -f "$npm_stamp" ]] || return 1
  cmp -s "$npm_stamp" "$oauth_dir/package-lock.json"
}

venv_ready() {
  [[ -x "$venv/bin/moto_server" && -x "$venv/bin/python" && -f "$venv_stamp" ]] || return 1
  cmp -s "$venv_stamp" "$requirements"
}

if apt_ready && venv_ready && node_ready && npm_ready; then
  log "all present (apt packages, $venv, $oauth_dir/node_modules); nothing to do"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  log "must run as root to install packages"
  exit 1
fi

start_s=$(date +%s)

install_apt() {
  local -a missing
  mapfile -t missing < <(missing_packages)
  if [[ ${#missing[@]} -eq 0 ]]; then
    # Files missing but packages marked installed: reinstall them all.
    missing=("${apt_packages[@]}")
  fi
  log "apt: installing ${missing[*]}"

  export DEBIAN_FRONTEND=noninteractive
  # postfix must not ask for a mail setup, and must not write a system main.cf for one.
  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections

  # Keep apt from starting the system daemons on ports 25/143/993: our peers run their own
  # instances on loopback ports from private config directories.
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi

  # Wait for another apt run's lock instead of failing at once.
  local lock_opt=(-o DPkg::Lock::Timeout=300)
  local apt_opts=(-y -q "${lock_opt[@]}" -o Dpkg::Options::=--force-confdef
    -o Dpkg::Options::=--force-confold --no-install-recommends)
  # Update the package lists only when they are missing or too old to name a candidate;
  # retry once after an update when the install fails on stale lists (404s).
  local need_update=0 pkg
  for pkg in "${missing[@]}"; do
    if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [^(]'; then
      need_update=1
      break
    fi
  done
  if [[ $need_update -eq 1 ]]; then
    log "apt: package lists lack candidates; running apt-get update"
    apt-get update -q "${lock_opt[@]}"
  fi
  if ! apt-get install "${apt_opts[@]}" "${missing[@]}"; then
    log "apt: install failed; running apt-get update and retrying once"
    apt-get update -q "${lock_opt[@]}"
    apt-get install "${apt_opts[@]}" "${missing[@]}"
  fi

  # Some images ship policy-rc.d-less and start daemons anyway (no systemd); make sure no
  # system postfix/dovecot holds ports or state our private instances would trip over.
  if [[ -f /var/spool/postfix/pid/master.pid ]]; then
    /usr/sbin/postfix stop >/dev/null 2>&1 || true
  fi
  if [[ -f /run/dovecot/master.pid ]]; then
    /usr/bin/doveadm stop >/dev/null 2>&1 || true
  fi

  if [[ $made_policy -eq 1 ]]; then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
  apt_ready || { log "apt: packages installed but binaries still missing"; exit 1; }
}

install_venv() {
  log "venv: building $venv from $(basename "$requirements")"
  # Debian's own python3: present on every Debian machine, unlike a pyenv build.
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv_stamp"
  log "venv: $("$venv/bin/python" -c 'import moto, boto3; print("moto", moto.__version__, "boto3", boto3.__version__)')"
}

install_npm() {
  log "npm: npm ci in $oauth_dir (oidc-provider, jose; pinned by package-lock.json)"
  # --ignore-scripts: none of these packages needs an install script, and none may run one.
  (cd "$oauth_dir" && npm ci --no-audit --no-fund --loglevel=error --ignore-scripts >/dev/null)
  cp "$oauth_dir/package-lock.json" "$npm_stamp"
}

apt_ready || install_apt
venv_ready || install_venv
if ! node_ready; then
  [[ -x /usr/bin/node ]] || { apt_packages=("${node_packages[@]}"); needed_files=(/usr/bin/node /usr/bin/npm); install_apt; }
  node_ready || { log "Node.js 20 or newer is needed for the OAuth peers"; exit 1; }
fi
npm_ready || install_npm

log "done in $(($(date +%s) - start_s)) s"
