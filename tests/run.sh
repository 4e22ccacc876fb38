#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs the few system tools the tests use
# (when missing and when we may), then `cargo test --workspace`, then prints the proof suite's figures.
# PROOF_FULL=1 runs the proof suite's matrices in full (as .ci/run does); PROOF_SEED=<n> replays a seeded run.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v zip >/dev/null || missing+=(zip)
command -v unzip >/dev/null || missing+=(unzip)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "note: ${missing[*]} not installed; the tests that need them say so and skip" >&2
  fi
fi

# The proof suite appends its figures here; they are totalled when the tests end, pass or fail.
export PROOF_SUMMARY="${PROOF_SUMMARY:-$PWD/${CARGO_TARGET_DIR:-target}/proof-summary.jsonl}"
mkdir -p "$(dirname "$PROOF_SUMMARY")"
rm -f "$PROOF_SUMMARY"
summary() {
  if [ "${PROOF_SUMMARY_LATER:-}" != 1 ] && command -v python3 >/dev/null; then
    echo >&2
    python3 tests/proof-summary.py "$PROOF_SUMMARY" >&2 || true
  fi
}
trap summary EXIT

cargo test --workspace "$@"
