#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Fuzz every libFuzzer target (or the ones named) for a bounded time each,
# starting from the committed seeds, and report executions and findings.
#
#   tests/fuzz/run-all.sh BUILD_DIR [TARGET...]
#
# BUILD_DIR was set up with CC=clang -Dfuzzing=true (and, for the sanitizer
# reports, -Db_sanitize=address,undefined); TARGETs are nbd-handshake,
# nbd-transmission, nbd-client, qmp, keyval (default: all). Environment:
#   BERTH_FUZZ_SECONDS   seconds per target (default 60)
#   BERTH_FUZZ_WORKDIR   where the growing corpora and any crash, leak,
#                        timeout or out-of-memory input go (default: a new
#                        temporary folder, kept when something was found)
#   BERTH_FUZZ_FLAGS     more libFuzzer flags (e.g. -jobs=4 -workers=4)
# The committed corpora are only read; new inputs go to the work folder
# (merge the interesting ones back with -merge=1, see docs/security.rst).
# Exits 1 if any target found anything, 2 on usage errors.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
if [ $# -lt 1 ] || [ ! -d "$1/tests/fuzz" ]; then
    echo "usage: $0 BUILD_DIR [TARGET...]  (BUILD_DIR built with -Dfuzzing=true)" >&2
    exit 2
fi
build="$(cd "$1" && pwd)"
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(nbd-handshake nbd-transmission nbd-client qmp keyval qcow2)
seconds="${BERTH_FUZZ_SECONDS:-60}"
work="${BERTH_FUZZ_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/berth-fuzz-XXXXXX")}"
mkdir -p "$work"

# Leaks are findings; a report stops the target at once.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=0
printf '%-18s %12s %10s %8s  %s\n' target executions exec/s cov result
for t in "${targets[@]}"; do
    exe="$build/tests/fuzz/fuzz-$t"
    seeds="$here/corpus/$t"
    if [ ! -x "$exe" ] || [ ! -d "$seeds" ]; then
        echo "$t: no target $exe or no corpus $seeds" >&2
        exit 2
    fi
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
    log="$work/$t/log"
    # Bounded memory: libFuzzer fails an input whose run goes past 2 GiB of
    # RSS or asks for more than that in one malloc; -timeout fails an input
    # that takes over 25 s (the targets' own hang check fires at 5 s).
    # shellcheck disable=SC2086
    "$exe" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -timeout=25 -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
        ${BERTH_FUZZ_FLAGS:-} "$work/$t/corpus" "$seeds" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    found=$(ls -A "$work/$t/artifacts")
    if [ $rc -eq 0 ] && [ -z "$found" ]; then
        result=ok
    else
        result="FOUND (exit $rc): $work/$t/artifacts/ ${found//$'\n'/ } (log: $log)"
        failed=1
    fi
    printf '%-18s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$result"
done

if [ $failed -eq 0 ] && [ -z "${BERTH_FUZZ_WORKDIR:-}" ]; then
    rm -rf "$work"
else
    echo "work folder: $work"
fi
exit $failed
