#!/usr/bin/env bash
# Builds the mailcred-sidecar and mailcred-operator images FROM scratch with podman (no Docker
# engine, no base image pulled): each image is one release binary (the sidecar's static), the
# shared libraries ldd lists for it (the operator: glibc's libc/libm/ld.so and libgcc_s), Debian's
# CA bundle, passwd/group entries for the non-root user 65532, and OCI labels
# (images/Containerfile). Prints each image's size; `IMAGE size_bytes compressed_bytes` lines
# go to $SIZES_OUT when set (bench/footprint reads them).
#
# Usage (root): scripts/images.sh [sidecar] [operator]     (default: both)
# Env: TAG (dev), IMAGE_PREFIX (localhost/; the images workflow (.github/workflows/images.yml) sets ghcr.io/OWNER/),
#      SIDECAR_BIN / OPERATOR_BIN (use these binaries instead of building them),
#      REVISION (git HEAD), SIZES_OUT.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${TAG:-dev}"
IMAGE_PREFIX="${IMAGE_PREFIX:-localhost/}"
REVISION="${REVISION:-$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)}"
# shellcheck source-path=SCRIPTDIR source=../e2e/lib/common.sh
source "$repo/e2e/lib/common.sh"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(sidecar operator)

# podman + buildah from Debian (rootful); runc: crun fails on hybrid cgroups (e2e/pod/).
need=()
for tool in podman buildah runc; do command -v "$tool" >/dev/null || need+=("$tool"); done
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || need+=(ca-certificates)
if [[ ${#need[@]} -gt 0 ]]; then
  [[ $EUID -eq 0 ]] || die "missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root"
  echo "images.sh: installing ${need[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work="$(mktemp -d /tmp/mcimages.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# Each binary on its own (cargo -p): one invocation for both would unify their features.
# The sidecar is linked statically (glibc's static-pie, scripts/release-sidecar.sh): no shared
# libraries to ship or to map in every pod (bench/README.md, Footprint).
binary() { # PACKAGE [override path] -> path of the release binary
  if [[ -n "${2:-}" ]]; then printf '%s\n' "$2"; return; fi
  if [[ "$1" == mailcred-sidecar ]]; then "$repo/scripts/release-sidecar.sh"; return; fi
  (cd "$repo" && nice cargo build -q --locked --release -p "$1" --bin "$1" >&2)
  printf '%s\n' "$repo/target/release/$1"
}

# The root filesystem of one image: BIN, its libraries at the paths the dynamic loader looks
# them up by (none for the static sidecar), CA bundle, users, and the copyright files glibc's
# and libgcc's licenses ask for (both are linked into the static binary too).
rootfs() { # BIN NAME DIR
  local bin="$1" name="$2" dir="$3"
  install_with_libs "$bin" "$dir" "/usr/local/bin/$name"
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$dir/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$dir/etc/group"
  # What glibc reads for host lookups when /etc/nsswitch.conf is missing differs by version.
  printf '%s\n' 'hosts: files dns' >"$dir/etc/nsswitch.conf"
  for pkg in libc6 libgcc-s1; do
    [[ -f "/usr/share/doc/$pkg/copyright" ]] &&
      install -D -m 0644 "/usr/share/doc/$pkg/copyright" "$dir/usr/share/doc/$pkg/copyright"
  done
  chmod 0755 "$dir"
}

for target in "${targets[@]}"; do
  case "$target" in
    sidecar) package=mailcred-sidecar; override="${SIDECAR_BIN:-}" ;;
    operator) package=mailcred-operator; override="${OPERATOR_BIN:-}" ;;
    *) echo "images.sh: unknown image $target (sidecar, operator)" >&2; exit 2 ;;
  esac
  bin="$(binary "$package" "$override")"
  rootfs "$bin" "$package" "$work/$target"
  image="${IMAGE_PREFIX}${package}:${TAG}"
  podman build -q -f "$repo/images/Containerfile" --target "$target" \
    --build-arg VERSION="$version" --build-arg REVISION="$REVISION" \
    --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -t "$image" "$work/$target" >/dev/null
  size="$(podman image inspect --format '{{.Size}}' "$image")"
  # What a registry stores and a node pulls: the gzip-compressed layer.
  compressed="$(podman save "$image" 2>/dev/null | gzip -6 | wc -c)"
  awk -v i="$image" -v s="$size" -v c="$compressed" -v b="$(stat -c %s "$bin")" \
    'BEGIN { printf "%s: %.1f MB (%.1f MB compressed; binary %.1f MB)\n", i, s/1e6, c/1e6, b/1e6 }'
  [[ -z "${SIZES_OUT:-}" ]] || printf '%s %s %s\n' "$image" "$size" "$compressed" >>"$SIZES_OUT"
done
