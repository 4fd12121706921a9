#!/usr/bin/env bash
# Runs every test of the project, as CI does: formatting, lints, the generated CRD, unit and
# property tests, tests against real postfix/dovecot/moto on loopback, and the local e2e suite.
# On a fresh Debian/Ubuntu machine, as root: installs postfix, dovecot, swaks, curl, openssl and
# a Python venv with moto (e2e/peers/install.sh). Needs Rust >= 1.94 (rustup) with clippy+rustfmt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
t0=$SECONDS

command -v cargo >/dev/null || { echo "cargo not found: install Rust >= 1.94 with rustup" >&2; exit 1; }

step "installing test peers (postfix, dovecot, moto) if missing"
e2e/peers/install.sh

# Short path: dovecot's unix socket names must fit in 107 bytes.
run_dir=$(mktemp -d /tmp/mct.XXXXXX)
chmod 755 "$run_dir"
cleanup() {
  e2e/peers/stop.sh "$run_dir/peers" >/dev/null 2>&1 || true
  if [[ "${KEEP_TEST_DIR:-0}" != 1 ]]; then rm -rf "$run_dir"; fi
}
trap cleanup EXIT

step "starting test peers in $run_dir/peers"
e2e/peers/start.sh "$run_dir/peers"
export MAILCRED_PEERS_ENV="$run_dir/peers/env"

step "test peers self-test (real clients against postfix, dovecot, moto)"
e2e/peers/selftest.sh

step "cargo fmt --check"
cargo fmt --all --check

step "crds/mailcredential.yaml matches the code"
cargo run -q --locked -p mailcred-core --bin crdgen | diff -u crds/mailcredential.yaml - \
  || { echo "stale CRD: run 'cargo run -q -p mailcred-core --bin crdgen > crds/mailcredential.yaml'" >&2; exit 1; }

step "cargo clippy -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "one crypto provider: no ring in the dependency tree"
ring_users=$(cargo tree --locked --workspace -e normal -i ring 2>/dev/null || true)
if [[ -n "$ring_users" ]]; then
  printf '%s\n' "$ring_users" >&2
  echo "ring is in the tree: use aws-lc-rs only (DEPENDENCIES.md)" >&2
  exit 1
fi

step "supply chain: cargo deny (bans, licenses, sources)"
if ! command -v cargo-deny >/dev/null; then
  echo "installing cargo-deny 0.20.2 from crates.io (about 4 minutes, once)"
  cargo install --locked --quiet cargo-deny@0.20.2
fi
cargo deny --log-level error check bans licenses sources

step "cargo test (including the tests against real peers)"
cargo test --locked --workspace -- --include-ignored

step "Helm chart: lint, render, validate, examples against the CRD schema"
charts/check.sh

if [[ -x e2e/local/run.sh ]]; then
  step "local end-to-end suite"
  e2e/local/run.sh "$run_dir/e2e"
fi

step "registration page in a real browser (Chromium + Playwright; docs/link-sealing.md)"
e2e/linkpage/run.sh "$run_dir/linkpage" --shots "$run_dir/linkpage-shots"

step "fault injection: KMS slow/erroring, resets mid-DATA/mid-literal, expired cert, re-seal, deletion"
e2e/faults/run.sh "$run_dir/faults" --strict

step "secret hygiene: the sidecar's memory holds the password only while cached"
e2e/hygiene/check-memory.py --sidecar target/debug/mailcred-sidecar \
  --plugin target/debug/kubectl-mailcred

# The debug binary (built above) in the image: the pod suite checks the injected container
# settings and the pod model, not the release build (bench/footprint measures that image).
step "pod model: the injected sidecar in a podman pod against the peers (e2e/pod/run.sh)"
SIDECAR_BIN="$PWD/target/debug/mailcred-sidecar" e2e/pod/run.sh

step "all tests passed in $((SECONDS - t0)) s"
