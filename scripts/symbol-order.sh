#!/usr/bin/env bash
# Writes sidecar/symbol-order.txt: the functions the sidecar runs, from start to idle, through a
# warm-up and the footprint bench's load (bench/footprint/run.sh, one rep), recorded exhaustively
# by valgrind's callgrind on an unstripped build of the same source and flags. release-sidecar.sh
# hands the list to the linker (lld --symbol-ordering-file) so that these functions sit together
# at the start of .text. Why: the kernel maps file pages in 64 KiB windows, so code touched here
# and there makes nearly the whole binary resident; packed, the touched windows are few (bench/README.md,
# Footprint, session 8). A stale list only costs RSS: unknown names are ignored.
# Usage (root): scripts/symbol-order.sh     (needs valgrind; about 25 minutes with the build)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
host="$(rustc -vV | sed -n 's/^host: //p')"
command -v valgrind >/dev/null || apt-get install -y -q valgrind >&2
work="$(mktemp -d /tmp/mcorder.XXXXXX)"; chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
(cd "$repo" && CARGO_PROFILE_RELEASE_STRIP=none RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  CARGO_TARGET_DIR="$repo/target/symbol-order" \
  nice cargo build -q --locked --release --target "$host" -p mailcred-sidecar --bin mailcred-sidecar >&2)
bin="$repo/target/symbol-order/$host/release/mailcred-sidecar"
cat >"$work/under-callgrind" <<WRAP
#!/bin/sh
exec valgrind -q --tool=callgrind --callgrind-out-file=$work/callgrind.%p --demangle=no \
  --compress-strings=no --compress-pos=no "$bin" "\$@"
WRAP
chmod +x "$work/under-callgrind"
NO_IMAGES=1 REPS=1 MESSAGES=40 "$repo/bench/footprint/run.sh" "profile=$work/under-callgrind" >&2
# callgrind names each function it ran once per file as `fn=NAME` (`'N` marks a recursion depth).
grep -h '^fn=' "$work"/callgrind.* | sed -e 's/^fn=//' -e "s/'[0-9]*\$//" \
  | grep -v -e '^(below main)' -e '^0x' | LC_ALL=C sort -u >"$repo/sidecar/symbol-order.txt"
echo "symbol-order.sh: $(wc -l <"$repo/sidecar/symbol-order.txt") functions in sidecar/symbol-order.txt" >&2
