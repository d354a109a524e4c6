#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS - build every libFuzzer target and fuzz each one.
#
# Each tests/fuzz/fuzz_NAME.c is linked with the handler (common/*.c except
# main.c) under clang -fsanitize=fuzzer,address,undefined into
# build-fuzz/fuzz_NAME, then run for SECONDS on a copy of its seed corpus
# (tests/fuzz/corpus_NAME/, or tests/fuzz/corpus/ for fuzz_http), so the
# corpus in the repository only changes when someone adds a regression input
# by hand. A crash, a leak, a sanitizer report or a timeout fails the target;
# libFuzzer saves the input as build-fuzz/artifacts/NAME-crash-* (add it to
# the seed corpus once it is fixed). Prints one line per target with the
# inputs executed, then `fuzz: N passed, N failed`; exit status 1 on failure.
#
# Environment: BUILD (default build-fuzz), CC (default clang),
# FUZZ_FLAGS (extra libFuzzer flags, e.g. -jobs=2).
set -uo pipefail

seconds=${1:-60}
cd "$(dirname "$0")/../.."
build=${BUILD:-build-fuzz}
cc=${CC:-clang}
case $seconds in '' | *[!0-9]*)
    echo "usage: tests/fuzz/run.sh SECONDS" >&2
    exit 2
    ;;
esac

cflags=(-g -O1 -std=gnu11 -D_GNU_SOURCE -Icommon -fno-omit-frame-pointer
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
common_srcs=()
for f in common/*.c; do
    [ "$f" = common/main.c ] || common_srcs+=("$f")
done
mkdir -p "$build/artifacts" "$build/work"

passed=0
failed=0
summary=()
for src in tests/fuzz/fuzz_*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    short=${name#fuzz_}
    seeds=tests/fuzz/corpus_$short
    [ -d "$seeds" ] || seeds=tests/fuzz/corpus
    echo "== $name (seeds: $seeds, ${seconds}s)"
    if ! "$cc" "${cflags[@]}" -o "$build/$name" "$src" "${common_srcs[@]}" -lhttp_parser -pthread; then
        echo "FAIL $name: does not build"
        failed=$((failed + 1))
        continue
    fi
    work=$build/work/$name
    rm -rf "$work"
    mkdir -p "$work"
    [ -d "$seeds" ] && cp -r "$seeds/." "$work/"
    log=$build/$name.log
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak.
    "$build/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$short-" \
        ${FUZZ_FLAGS:-} "$work" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    corpus=$(find "$work" -type f | wc -l)
    if [ $rc -eq 0 ] && ! grep -a -q -e '^==[0-9]*==ERROR' -e 'runtime error:' "$log"; then
        echo "PASS $name: ${execs:-?} inputs in ${seconds}s, corpus $(find "$seeds" -type f 2>/dev/null | wc -l) -> $corpus"
        passed=$((passed + 1))
        summary+=("\"$name\": ${execs:-0}")
    else
        echo "FAIL $name: exit $rc after ${execs:-?} inputs; log $log"
        grep -a -m1 -A25 -e 'ERROR:' -e 'runtime error:' -e 'fuzz_[a-z]*: ' "$log" | sed 's/^/     /'
        ls "$build"/artifacts/"$short"-* 2>/dev/null | sed 's/^/     input: /'
        failed=$((failed + 1))
    fi
done
if [ $((passed + failed)) -eq 0 ]; then
    echo "FAIL no fuzz targets in tests/fuzz/"
    failed=1
fi
(IFS=,; echo "fuzz-summary: {\"seconds_each\": $seconds, \"inputs\": {${summary[*]}}}")
echo "fuzz: $passed passed, $failed failed"
[ $failed -eq 0 ]
