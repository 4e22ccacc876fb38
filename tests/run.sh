#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs the few system tools the tests use
# (when missing and when we may), then `cargo test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v zip >/dev/null || missing+=(zip)
command -v unzip >/dev/null || missing+=(unzip)
command -v redis-server >/dev/null || missing+=(redis-server)
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

cargo test --workspace "$@"
