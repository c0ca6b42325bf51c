#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers and the rule loader: runs every cargo-fuzz target in fuzz/ for
# SECONDS_PER_TARGET seconds (default 60), one after the other, and prints a table of executions
# and coverage per target. Exits non-zero if any target crashed, timed out or ran out of memory;
# the input that did it is in fuzz/artifacts/<target>/ (its path is printed).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Environment: FUZZ_TARGETS="cloudtrail dns" runs only those targets; FUZZ_ARGS="-max_len=8192"
# adds libFuzzer options to every run; CARGO_TARGET_DIR and CARGO_BUILD_JOBS are passed to cargo as
# usual. The toolchain may be stable: cargo-fuzz needs
# nightly-only flags (sanitizers, coverage instrumentation), which RUSTC_BOOTSTRAP=1 allows.
#
# Corpora: libFuzzer reads the seeds in fuzz/corpus/<target>/ (committed) and, when the shared
# real AWS samples are present (../shared/data/real beside the workspace, or $BUNKER_REAL_SAMPLES),
# small decompressed copies of them staged under fuzz/work/real/<target>/; it writes the inputs it
# finds to fuzz/work/corpus/<target>/, which later runs start from. Nothing under fuzz/work is
# committed (the real samples are licensed as test inputs only and are not redistributed).
set -euo pipefail

seconds=${1:-60}
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
fuzz_dir=$root/fuzz
work=$fuzz_dir/work
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed; installing it" >&2
    cargo install cargo-fuzz --locked
fi

cd "$fuzz_dir"
read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"

# Stage the real samples: at most 64 KB each after gunzip, sorted by the target that reads them.
stage_real_samples() {
    local real=${BUNKER_REAL_SAMPLES:-$root/../shared/data/real}
    [[ -f $real/README.md ]] || {
        echo "note: no real AWS samples at $real; fuzzing from fuzz/corpus alone" >&2
        return 0
    }
    rm -rf "$work/real"
    local file target name bytes
    while IFS= read -r -d '' file; do
        case $file in
            */LICENSE* | */NOTICE* | */COMMIT | */PROVENANCE* | */README* | *.yaml | *.csv | *.md) continue ;;
            *vpcflow* | *awsdocs-vpc/*) target=vpcflow ;;
            *route53*) target=dns ;;
            *SQSMessageBody* | *eventbridge-s3-event* | *kinesis-event*) target=notification ;;
            *cloudtrail* | *CloudTrail* | *Serializer* | *otrf-security-datasets/unzipped/*.json) target=cloudtrail ;;
            *) target=decode ;;
        esac
        name=$(echo "${file#"$real"/}" | tr '/' '_')
        mkdir -p "$work/real/$target" "$work/real/decode"
        # The stored bytes as they are (gzip or not) feed the decode target, too.
        bytes=$(stat -c %s "$file")
        ((bytes <= 65536)) && cp "$file" "$work/real/decode/$name"
        [[ $target == decode ]] && continue
        if [[ $file == *.gz ]]; then
            gzip -dc "$file" 2>/dev/null | head -c 65537 >"$work/real/$target/${name%.gz}" || true
        else
            head -c 65537 "$file" >"$work/real/$target/$name"
        fi
        # Larger than 64 KB: keep its first 64 KB only if that still ends at a line break.
        if (($(stat -c %s "$work/real/$target/${name%.gz}") > 65536)); then
            head -c 65536 "$work/real/$target/${name%.gz}" | sed '$d' >"$work/real/$target/${name%.gz}.head"
            rm "$work/real/$target/${name%.gz}"
        fi
    done < <(find "$real" -type f -print0 | sort -z)
}
stage_real_samples

# The rule loader's target needs DataFusion and the rest of the detection stack, behind the `rules`
# feature; the parser targets build without it.
features_of() {
    [[ $1 == rules || $1 == sigma ]] && echo "--features=rules" || true
}

echo "building the fuzz targets (sanitizer: address)" >&2
cargo fuzz build
for loader in rules sigma; do
    if [[ " ${targets[*]} " == *" $loader "* ]]; then
        echo "building the $loader loader's fuzz target (DataFusion; the first build takes a while)" >&2
        cargo fuzz build --features=rules "$loader"
    fi
done

mkdir -p "$work/logs"
declare -A result runs cov ft corpus artifact
failed=0
for target in "${targets[@]}"; do
    mkdir -p "$work/corpus/$target" "artifacts/$target"
    dirs=("$work/corpus/$target")
    [[ -d corpus/$target ]] && dirs+=("corpus/$target")
    [[ -d $work/real/$target ]] && dirs+=("$work/real/$target")
    # The rule loader's seeds are the built-in pack itself.
    [[ $target == rules ]] && dirs+=("$root/detect/rules")
    args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
    [[ -f dict/$target.dict ]] && args+=(-dict="dict/$target.dict")
    read -r -a extra <<<"${FUZZ_ARGS:-}"
    args+=("${extra[@]}")
    log=$work/logs/$target.log
    echo "fuzzing $target for ${seconds}s (log: $log)" >&2
    status=0
    # shellcheck disable=SC2046 # no features, or one --features=... word
    cargo fuzz run $(features_of "$target") "$target" "${dirs[@]}" -- "${args[@]}" >"$log" 2>&1 || status=$?
    # libFuzzer's status lines: "#<runs> <event> cov: <edges> ft: <features> corp: <n>/<size> ...".
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    runs[$target]=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
    cov[$target]=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft[$target]=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corpus[$target]=$(sed -nE 's/.* corp: ([0-9]+\/[0-9A-Za-z]+).*/\1/p' <<<"$last")
    if ((status == 0)) && grep -qE '^#[0-9]+[[:space:]]+DONE' "$log"; then
        result[$target]=ok
    else
        failed=1
        result[$target]=$(grep -oE 'SUMMARY: libFuzzer: [a-z-]+|deadly signal|panicked' "$log" | head -n 1 || true)
        result[$target]=${result[$target]:-"failed (exit $status)"}
        artifact[$target]=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
        echo "---- $target: ${result[$target]}; end of its log:" >&2
        grep -vE '^#[0-9]+' "$log" | tail -n 40 >&2
    fi
done

echo
printf '%-13s %-28s %12s %8s %8s %14s\n' target result executions cov ft corpus
for target in "${targets[@]}"; do
    printf '%-13s %-28s %12s %8s %8s %14s\n' "$target" "${result[$target]}" "${runs[$target]:--}" \
        "${cov[$target]:--}" "${ft[$target]:--}" "${corpus[$target]:--}"
done
for target in "${targets[@]}"; do
    if [[ -n ${artifact[$target]:-} ]]; then
        echo "$target: crashing input ${artifact[$target]}; reproduce with" \
            "(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $(features_of "$target") $target ${artifact[$target]})"
    fi
done
exit $failed
