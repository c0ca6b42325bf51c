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

# The worker tests run against a real S3/SQS/KMS endpoint: moto_server from PyPI's moto[server].
if ! command -v python3 >/dev/null 2>&1; then
  echo "error: python3 is not installed; the worker tests need it for moto_server (PyPI moto[server])" >&2
  exit 1
fi
if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c 'import moto.server, flask_cors' >/dev/null 2>&1; then
  echo "installing moto[server] (the S3/SQS/KMS endpoint the worker tests talk to)..." >&2
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6' || {
    echo "error: could not install moto[server]; install it with: python3 -m pip install 'moto[server]'" >&2
    exit 1
  }
fi
if ! command -v moto_server >/dev/null 2>&1; then
  echo "error: moto[server] is installed but moto_server is not on PATH; add pip's script directory to PATH" >&2
  exit 1
fi

# `bunker serve` is tested with a real Flight SQL client: the ADBC driver from PyPI.
if ! python3 -c 'import adbc_driver_flightsql, pyarrow' >/dev/null 2>&1; then
  echo "installing adbc-driver-flightsql and pyarrow (the Flight SQL client the serve tests use)..." >&2
  python3 -m pip install --quiet --disable-pip-version-check 'adbc-driver-flightsql>=1.0' 'pyarrow>=14' || {
    echo "error: could not install the ADBC driver; install it with: python3 -m pip install adbc-driver-flightsql pyarrow" >&2
    exit 1
  }
fi

# Dependency hygiene: licenses, banned and duplicate crates, sources (deny.toml says why each is
# allowed). The advisory database cannot be fetched here, so advisories are not checked.
if ! cargo deny --version 2>/dev/null | grep -q '^cargo-deny 0\.20'; then
  echo "installing cargo-deny 0.20 (checks licenses, bans and sources; see deny.toml)..." >&2
  cargo install --locked cargo-deny@0.20.2 || {
    echo "error: could not install cargo-deny; install it with: cargo install --locked cargo-deny@0.20.2" >&2
    exit 1
  }
fi
cargo deny --locked check licenses bans sources

# A clean build of every target links some twenty test and bench binaries with DataFusion in each.
# Incremental caches would add gigabytes that a fresh clone never reuses, so they are off unless
# the caller asks for them; and a full disk fails the build half way with a confusing error, so
# say up front when there is too little room.
NEED_GB=10
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
free_kb=$(df -Pk "$target_dir" | awk 'NR == 2 { print $4 }')
if [ -n "$free_kb" ] && [ "$free_kb" -lt $((NEED_GB * 1024 * 1024)) ]; then
  echo "warning: only $((free_kb / 1024 / 1024)) GiB free under $target_dir; a clean build of the tests needs about ${NEED_GB} GiB" >&2
fi

cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked

# A short run of the parser fuzz targets (scripts/hardening.sh runs every target for ten minutes):
# the seed corpora must still pass, and ten seconds of new inputs each. The rule loader's target is
# left to the long run: its instrumented build of DataFusion takes over an hour of CPU.
FUZZ_TARGETS="notification cloudtrail vpcflow dns decode timestamp" scripts/fuzz.sh "${BUNKER_CI_FUZZ_SECONDS:-10}"
