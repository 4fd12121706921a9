#!/usr/bin/env bash
# Builds the release sidecar as the images ship it and prints its path: statically linked
# against glibc (static-pie, `-C target-feature=+crt-static`), so the image carries no shared
# libraries and the pod maps no libc/libm/libgcc/ld.so (bench/README.md, Footprint: image
# 16.7 → 14.4 MB, idle RSS −1.6 MiB). `--target` is explicit so that crt-static applies to the
# binary only, not to build scripts and proc macros (which must stay dynamic); the binary is
# then target/<host triple>/release/mailcred-sidecar. glibc's "files" and "dns" NSS modules are
# built into libc since 2.34, so getaddrinfo needs no libnss_*.so at run time.
# Usage: scripts/release-sidecar.sh [extra cargo args]      (used by scripts/images.sh)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
host="$(rustc -vV | sed -n 's/^host: //p')"
[[ "$host" == *-linux-gnu ]] || { echo "release-sidecar.sh: static glibc needs a *-linux-gnu host, not $host" >&2; exit 2; }
# Relative relocations packed (DT_RELR, `-z pack-relative-relocs`; glibc >= 2.36 applies them in
# static-pie too): the table that static-pie start-up reads whole shrinks from 737 KiB to 9 KiB,
# and the binary stays position-independent (bench/README.md, Footprint, session 9).
rustc_args=(-C link-arg=-Wl,-z,pack-relative-relocs)
# On x86_64 the linker is rust-lld, which packs the functions that sidecar/symbol-order.txt
# names (those the sidecar runs, scripts/symbol-order.sh) at the start of .text, so that idle
# code faults in few 64 KiB windows of the binary (bench/README.md, Footprint, session 8).
# The linker reads the list from a path named by its content: cargo relinks when its rustc
# arguments change, not when a file they name does (a changed list alone was not linked).
if [[ "$host" == x86_64-unknown-linux-gnu && -s "$repo/sidecar/symbol-order.txt" ]]; then
  order="$repo/target/symbol-order-$(sha256sum "$repo/sidecar/symbol-order.txt" | cut -c1-16).txt"
  mkdir -p "$repo/target" && cp "$repo/sidecar/symbol-order.txt" "$order"
  rustc_args+=(-C "link-arg=-Wl,--symbol-ordering-file=$order" -C link-arg=-Wl,--no-warn-symbol-ordering)
fi
# SIDECAR_UNSTRIPPED=1 keeps the symbols (scripts/symbol-order.sh): a flag of the final rustc
# call only, so every crate keeps the metadata hash, and every function the name it ships with.
[[ -z "${SIDECAR_UNSTRIPPED:-}" ]] || rustc_args+=(-C strip=none)
(cd "$repo" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  nice cargo rustc -q --locked --release --target "$host" -p mailcred-sidecar --bin mailcred-sidecar "$@" -- "${rustc_args[@]}" >&2)
printf '%s\n' "$repo/target/$host/release/mailcred-sidecar"
