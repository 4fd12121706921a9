#!/usr/bin/env bash
# The sidecar's footprint against the goals of issue #15, several builds side by side in one
# run (bench/footprint/footprint.py): start to ready, RSS idle after warm-up and with 100
# connections, image size (scripts/images.sh, one image per binary), SMTP/IMAP throughput and
# CPU per unit. Peers: MAILCRED_PEERS_ENV, or started here.
#
# Usage (root): bench/footprint/run.sh LABEL=BINARY[,ENV=VALUE...] ...
#   e.g. bench/footprint/run.sh before=/tmp/sidecar-e5c84cb after="$(scripts/release-sidecar.sh)" \
#          after-1-arena=/tmp/sidecar-e5c84cb,MALLOC_ARENA_MAX=1
#   (default: current=the static release sidecar, scripts/release-sidecar.sh)
# Env: REPS (2), MESSAGES (300), JSON_OUT, NO_IMAGES=1 (skip the image sizes).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../e2e/lib/common.sh
source "$repo/e2e/lib/common.sh"
export AWS_EC2_METADATA_DISABLED=true
work="$(mktemp -d /tmp/mcfoot.XXXXXX)"; chmod 755 "$work"
cleanup() {
  if [[ -z "${peers_given:-}" && -f "$work/peers/env" ]]; then "$repo/e2e/peers/stop.sh" "$work/peers" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [[ -n "${MAILCRED_PEERS_ENV:-}" ]]; then
  peers_given=1
else
  "$repo/e2e/peers/start.sh" "$work/peers" >&2
  export MAILCRED_PEERS_ENV="$work/peers/env"
fi

variants=("$@")
if [[ ${#variants[@]} -eq 0 ]]; then
  # The sidecar as the image ships it (static, scripts/release-sidecar.sh).
  variants=("current=$("$repo/scripts/release-sidecar.sh")")
fi
[[ -x "$repo/target/debug/kubectl-mailcred" ]] || (cd "$repo" && cargo build -q -p kubectl-mailcred)

flags=()
declare -A imaged=()
for v in "${variants[@]}"; do
  label="${v%%=*}"; rest="${v#*=}"; bin="${rest%%,*}"
  flags+=(--variant "$v")
  [[ -z "${NO_IMAGES:-}" ]] || continue
  # One image per distinct binary; a variant that only sets env shares its binary's image.
  if [[ -z "${imaged[$bin]:-}" ]]; then
    : >"$work/sizes"
    SIDECAR_BIN="$bin" TAG="footprint-$label" SIZES_OUT="$work/sizes" "$repo/scripts/images.sh" sidecar >&2
    read -r image size compressed <"$work/sizes"
    podman rmi -f "$image" >/dev/null 2>&1 || true
    imaged[$bin]="$size,$compressed"
  fi
  flags+=(--image "$label=${imaged[$bin]}")
done

"$repo/.venv/bin/python" "$here/footprint.py" --work "$work" --reps "${REPS:-2}" \
  --messages "${MESSAGES:-300}" --plugin "$repo/target/debug/kubectl-mailcred" \
  ${JSON_OUT:+--json "$JSON_OUT"} "${flags[@]}"
