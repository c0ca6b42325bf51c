#!/usr/bin/env bash
# The hardening suites, long versions (issue: fuzzed parsers, fault injection, process faults):
#
#   1. every fuzz target for FUZZ_SECONDS each (default 600), through scripts/fuzz.sh;
#   2. the fault-injection suite (a proxy between bunker and moto_server returning 500/503/SlowDown,
#      resetting, stalling and truncating) with more objects and higher fault rates;
#   3. the SIGKILL soak: 50+ restarts of the worker at random points while objects keep arriving;
#   4. the hostile-input and disk-fault tests, and `cargo deny check licenses bans sources`.
#
#   scripts/hardening.sh            # everything, long (about an hour and a half on 2 cores)
#   scripts/hardening.sh fuzz       # only the fuzzers (FUZZ_SECONDS, FUZZ_TARGETS as scripts/fuzz.sh)
#   scripts/hardening.sh faults     # only the fault-injection suite
#   scripts/hardening.sh soak       # only the SIGKILL soak
#
# The short versions of 2-4 run in the default test command (scripts/test.sh), and so in CI, with a
# 10-second run of each parser fuzz target. BUNKER_HARDENING=long is what makes the tests long; each
# prints what it survived (faults injected by kind, restarts, rows lost).
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
case $what in
    all | fuzz | faults | soak) ;;
    *)
        echo "usage: $0 [all|fuzz|faults|soak]" >&2
        exit 2
        ;;
esac

# The worker tests need moto_server; scripts/test.sh explains and installs it.
if [[ $what != fuzz ]] && ! command -v moto_server >/dev/null 2>&1; then
    echo "error: moto_server is not installed; run scripts/test.sh once, or: python3 -m pip install 'moto[server]'" >&2
    exit 1
fi

export BUNKER_HARDENING=long
run_tests() {
    # --workspace so that features resolve as in the full test run and its build is reused.
    cargo test --workspace --locked --test worker "$@" -- --nocapture --test-threads=1
}

if [[ $what == all || $what == fuzz ]]; then
    scripts/fuzz.sh "${FUZZ_SECONDS:-600}"
fi
if [[ $what == all || $what == faults ]]; then
    run_tests faults::
fi
if [[ $what == all || $what == soak ]]; then
    run_tests soak::
fi
if [[ $what == all ]]; then
    run_tests hostile::
    cargo deny --locked check licenses bans sources
fi
