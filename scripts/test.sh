#!/usr/bin/env bash
# The whole test suite, from a fresh clone: checks the toolchain, installs what the tests need,
# then runs every test of every crate. CI runs exactly this (see .ci/run and README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; install Rust from https://rustup.rs and re-run $0" >&2
  exit 1
fi

# The real AWS samples live beside the repository (../shared/data/real); the tests that read them
# fail with an explanation when they are missing, so say it up front too.
if [ ! -f ../shared/data/real/README.md ]; then
  echo "warning: ../shared/data/real is missing; the real-sample tests will fail until it is there" >&2
fi

cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
