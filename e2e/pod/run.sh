#!/usr/bin/env bash
# The pod model in podman (issue #15): the sidecar container exactly as the operator's webhook
# injects it, next to an application container, in one `podman pod --network host`, against
# the real peers on loopback. See pod.py for the checks.
#
# Usage (root): e2e/pod/run.sh
# Env: MAILCRED_PEERS_ENV (running peers; otherwise started and stopped here),
#      SIDECAR_IMAGE (use this local image; otherwise scripts/images.sh builds it from
#      SIDECAR_BIN or a release build), KEEP=1 keeps the work directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$repo/e2e/lib/common.sh"
export AWS_EC2_METADATA_DISABLED=true
export CONTAINERS_CONF="$here/containers.conf"
started=$SECONDS
# catatonit: `podman pod create` builds the pod's infra (pause) image from it (podman and the
# rest come with scripts/images.sh).
command -v catatonit >/dev/null ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends catatonit >/dev/null

work="$(mktemp -d /tmp/mcpod.XXXXXX)"; chmod 755 "$work"
cleanup() {
  if [[ -z "${MAILCRED_PEERS_ENV_GIVEN:-}" && -f "$work/peers/env" ]]; then
    "$repo/e2e/peers/stop.sh" "$work/peers" >/dev/null 2>&1 || true
  fi
  if [[ "${KEEP:-}" == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
if [[ -n "${MAILCRED_PEERS_ENV:-}" ]]; then
  MAILCRED_PEERS_ENV_GIVEN=1
else
  "$repo/e2e/peers/start.sh" "$work/peers" >/dev/null
  export MAILCRED_PEERS_ENV="$work/peers/env"
fi

# The sealing tool and the operator's admission code: the debug builds `cargo test --workspace`
# leaves (scripts/test.sh); built here only when missing (a `-p` build of its own would
# recompile shared dependencies with other features).
for what in "kubectl-mailcred:-p kubectl-mailcred" "examples/admit:-p mailcred-operator --example admit"; do
  [[ -x "$repo/target/debug/${what%%:*}" ]] || (cd "$repo" && read -ra a <<<"${what#*:}" && cargo build -q "${a[@]}")
done
t=$SECONDS
if [[ -z "${SIDECAR_IMAGE:-}" ]]; then
  SIDECAR_IMAGE=localhost/mailcred-sidecar:e2e-pod
  TAG=e2e-pod "$repo/scripts/images.sh" sidecar
fi
images_s=$((SECONDS - t))

# The application image, FROM scratch too (no base image can be pulled): Debian's python3 and
# its standard library, and the kind suite's app. Built here, on every run: a few seconds.
app_image=localhost/mailcred-e2e-app:dev
app_root="$work/app-root"
install_with_libs "$(readlink -f /usr/bin/python3)" "$app_root" /usr/bin/python3
pylib="/usr/lib/python$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
mkdir -p "$app_root$pylib"
tar -C "$pylib" --exclude=test --exclude=idlelib --exclude=tkinter --exclude=ensurepip \
  --exclude=site-packages --exclude=dist-packages --exclude=lib2to3 -cf - . | tar -C "$app_root$pylib" -xf -
install -D -m 0644 "$repo/e2e/kind/app.py" "$app_root/app/app.py"
printf '%s\n' 'FROM scratch' 'COPY . /' 'USER 65532:65532' 'ENV PATH=/usr/bin' >"$work/app.Containerfile"
podman build -q -f "$work/app.Containerfile" -t "$app_image" "$app_root" >/dev/null

# The Kubernetes API stand-in's serving certificate (the sidecar verifies it with ca.crt of its
# token volume, as in a cluster).
make_test_pki "$work/api-pki" "mailcred pod test API CA" 127.0.0.1 "IP:127.0.0.1" 1

rc=0
"$repo/.venv/bin/python" "$here/pod.py" --work "$work" --sidecar-image "$SIDECAR_IMAGE" \
  --app-image "$app_image" --admit "$repo/target/debug/examples/admit" --api-pki "$work/api-pki" \
  --plugin "$repo/target/debug/kubectl-mailcred" || rc=$?
log "took $((SECONDS - started)) s (images $images_s s)"
exit "$rc"
