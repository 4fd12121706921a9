#!/usr/bin/env bash
# Writes sidecar/symbol-order.txt: the functions the sidecar runs, from start to idle, through a
# warm-up and the footprint bench's load (bench/footprint/run.sh, one rep), recorded exhaustively
# by valgrind's callgrind on an unstripped build of the same source, flags and crate hashes. release-sidecar.sh
# hands the list to the linker (lld --symbol-ordering-file) so that these functions sit together
# at the start of .text. Why: the kernel maps file pages in 64 KiB windows, so code touched here
# and there makes nearly the whole binary resident; packed, the touched windows are few (bench/README.md,
# Footprint, session 8). A stale list only costs RSS: unknown names are ignored.
# Usage (root): scripts/symbol-order.sh     (needs valgrind and perf; about 25 minutes: callgrind, then up to 4 fault passes)
#        scripts/symbol-order.sh --faults  (keeps the list, adds only the page-fault passes below:
#        3-4 minutes a pass, enough after a small change renumbered a few names)
#        scripts/symbol-order.sh --refresh (after a code change: carries renumbered names over
#        to this build, scripts/symbol_refresh.py, then the fault passes; a few minutes)
#        scripts/symbol-order.sh --check   (prints how many listed functions the build still
#        has, exits 1 under 99 %: a code change renumbers some, another toolchain or Cargo.lock
#        renames every Rust function)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
host="$(rustc -vV | sed -n 's/^host: //p')"
work="$(mktemp -d /tmp/mcorder.XXXXXX)"; chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
# The build is release-sidecar.sh's own, unstripped by a flag of the final rustc call only: a
# profile or target-dir change would give every crate another metadata hash, so every Rust
# name in the list would miss the shipped binary (that happened in session 8).
bin="$work/mailcred-sidecar"
cp "$(SIDECAR_UNSTRIPPED=1 "$repo/scripts/release-sidecar.sh")" "$bin"
list="$repo/sidecar/symbol-order.txt"
if [[ "${1:-}" == --check ]]; then
  listed="$(LC_ALL=C sort -u "$list" | wc -l)"
  found="$(LC_ALL=C comm -12 <(nm "$bin" | awk '{print $NF}' | LC_ALL=C sort -u) <(LC_ALL=C sort -u "$list") | wc -l)"
  echo "symbol-order.sh: $found of $listed listed functions are in this build"
  # 97 % was already 1.5 MiB of idle RSS (session 11: the 3 % were hot, renumbered copies).
  ((found * 100 >= listed * 99)) || { echo "symbol-order.sh: the list is stale; run scripts/symbol-order.sh --refresh" >&2; exit 1; }
  exit 0
fi
if [[ "${1:-}" == --refresh ]]; then
  nm "$bin" | awk '{print $NF}' | python3 "$repo/scripts/symbol_refresh.py" "$list" >"$work/refreshed"
  cp "$work/refreshed" "$list"
elif [[ "${1:-}" != --faults ]]; then
command -v valgrind >/dev/null || apt-get install -y -q valgrind >&2
cat >"$work/under-callgrind" <<WRAP
#!/bin/sh
exec valgrind -q --tool=callgrind --callgrind-out-file=$work/callgrind.%p --demangle=no \
  --compress-strings=no --compress-pos=no "$bin" "\$@"
WRAP
chmod +x "$work/under-callgrind"
NO_IMAGES=1 REPS=1 MESSAGES=40 "$repo/bench/footprint/run.sh" "profile=$work/under-callgrind" >&2
# callgrind names each function it ran once per file as `fn=NAME` (`'N` marks a recursion depth).
grep -h '^fn=' "$work"/callgrind.* | sed -e 's/^fn=//' -e "s/'[0-9]*\$//" \
  | grep -v -e '^(below main)' -e '^0x' | LC_ALL=C sort -u >"$list"
echo "symbol-order.sh: $(wc -l <"$list") functions from callgrind" >&2
fi
# Then what callgrind cannot see: its virtual CPU has no AVX-512, so glibc's ifuncs and aws-lc's
# dispatch pick other functions there than on this CPU (__memmove_avx512_unaligned_erms,
# x25519 and ML-KEM assembly), and code that runs on timing (a timeout's abort handle) differs
# between runs. Each pass links the list, runs the same load under `perf record -e page-faults`
# and adds the functions whose first instruction fetch faulted outside it; a pass finds only one
# function per 64 KiB window (the rest of the window is mapped with it), so passes repeat until
# none is new (session 10: 16 passes added 126 functions; idle RSS 9.5 -> 6.07 MiB, bench/README.md).
command -v perf >/dev/null || apt-get install -y -q linux-perf >&2
cat >"$work/under-perf" <<WRAP
#!/bin/sh
exec perf record -q -e page-faults -c 1 -d -o "$work/faults.\$\$" -- "$bin" "\$@"
WRAP
chmod +x "$work/under-perf"
for pass in 1 2 3 4; do
  cp "$(SIDECAR_UNSTRIPPED=1 "$repo/scripts/release-sidecar.sh")" "$bin"
  rm -f "$work"/faults.*
  NO_IMAGES=1 REPS=1 MESSAGES=40 "$repo/bench/footprint/run.sh" "faults=$work/under-perf" >&2
  for f in "$work"/faults.*; do perf script -i "$f" -F addr,ip,sym,dso --no-demangle 2>/dev/null; done \
    | python3 "$repo/scripts/fault_symbols.py" "$bin" | LC_ALL=C comm -23 - "$list" >"$work/new"
  echo "symbol-order.sh: pass $pass: $(wc -l <"$work/new") functions faulted outside the list" >&2
  [[ -s "$work/new" ]] || break
  LC_ALL=C sort -u -o "$list" "$list" "$work/new"
done
echo "symbol-order.sh: $(wc -l <"$list") functions in sidecar/symbol-order.txt" >&2
